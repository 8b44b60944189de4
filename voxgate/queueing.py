"""The IVR's queue step on the ACD, and what a queued caller hears while waiting.

`AcdQueueService` is the `ivr.services.QueueService` that the IVR session
calls: it places the caller with `Acd.enqueue` and remembers the ticket.
`CallerLeg` is the part of a caller's call (SIP or browser) that outlives
the IVR session: its media leg (bridged by the media mixer) and the means
to wait for and cause the hangup. `hold_audio` and `announcement_text`
make what the caller hears between the IVR and the agent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acd.model import QueueTicket
from acd.service import Acd
from ivr.model import Flow, QueueStep
from ivr.services import QueueError as IvrQueueError
from ivr.services import QueuePlacement, QueueRequest
from media.audio import PcmAudio
from media.leg import MediaLeg
from media.wav import load_wav

logger = logging.getLogger("queues")

HOLD_RATE = 16_000
# A rising three-note chime (A4, C#5, E5) every 2.5 s at about -24 dBFS.
HOLD_NOTES_HZ = (440.0, 554.37, 659.26)
HOLD_NOTE_S = 0.35
HOLD_GAP_S = 0.1
HOLD_CYCLE_S = 2.5
HOLD_AMPLITUDE = 0.06


def warn_unknown_queues(flows: Iterable[Flow], queues: Collection[str]) -> int:
    """Log one warning per queue step whose queue is not in `queues` (`acd.queues`).

    Such a step sends every caller to its `on_error` step, so the node still
    starts, as it does with a missing default flow. A queue name with a
    template is known only during a call and is not checked. Returns the
    number of warnings.
    """
    count = 0
    for flow in flows:
        for step_id, step in flow.steps.items():
            if not isinstance(step, QueueStep) or "{{" in step.queue:
                continue
            if step.queue not in queues:
                logger.warning(
                    "flow %s, step %s: queue %r is not defined in acd.queues; "
                    "its callers go to the step's on_error",
                    flow.flow,
                    step_id,
                    step.queue,
                )
                count += 1
    return count


@dataclass(slots=True)
class CallerLeg:
    """A caller's call as the queue and the bridge need it, whatever its signaling."""

    call_id: str
    caller: str
    called: str
    media: MediaLeg
    wait_ended: Callable[[], Awaitable[object]]
    hangup: Callable[[], Awaitable[None]]
    voice: str = "en-us"
    # Blind transfer to a number or SIP URI (REFER for a SIP caller); True once
    # the target answered. None for a leg that cannot be transferred that way.
    transfer: Callable[[str], Awaitable[bool]] | None = None


class AcdQueueService:
    """Places callers from the IVR's queue step into the ACD.

    With `node_skill` set, every caller also requires that skill, which only
    the agents logged in on this node have, so that the ACD offers callers
    only to agents whose legs this node can bridge.
    """

    def __init__(self, acd: Acd, node_skill: str | None = None) -> None:
        self._acd = acd
        self._node_skill = node_skill
        self.tickets: dict[str, tuple[QueueTicket, float]] = {}

    async def enqueue(self, call_id: str, request: QueueRequest) -> QueuePlacement:
        """Queue the call; raise `ivr.services.QueueError` for an unknown or full queue."""
        context = dict(request.attributes)
        context["language"] = request.language
        skills = dict.fromkeys(request.skills, 1)
        if self._node_skill is not None:
            skills[self._node_skill] = 1
        try:
            ticket = await self._acd.enqueue(
                call_id,
                request.queue,
                request.priority,
                skills,
                context,
                reason=request.reason,
            )
        except KeyError:
            raise IvrQueueError(f"unknown queue {request.queue!r}") from None
        except ValueError as exc:
            raise IvrQueueError(str(exc)) from None
        if not ticket.queued or ticket.position is None:
            raise IvrQueueError(f"queue {request.queue!r} is full")
        self.tickets[call_id] = (ticket, self._acd.clock.now())
        return QueuePlacement(ticket.position, ticket.eta_s)

    def has_ticket(self, call_id: str) -> bool:
        """Return True if the IVR queued the call and `take_ticket` has not taken its ticket."""
        return call_id in self.tickets

    def take_ticket(self, call_id: str) -> tuple[QueueTicket, float] | None:
        """Return and forget the ticket of a call that the IVR queued, and its ACD join time."""
        return self.tickets.pop(call_id, None)


def hold_tone() -> PcmAudio:
    """Return one cycle of the built-in hold chime, used when a queue has no hold music."""
    cycle = np.zeros(round(HOLD_CYCLE_S * HOLD_RATE), dtype=np.float64)
    note_samples = round(HOLD_NOTE_S * HOLD_RATE)
    ramp = np.minimum(1.0, np.minimum(np.arange(note_samples), np.arange(note_samples)[::-1]) / 160)
    t = np.arange(note_samples) / HOLD_RATE
    start = 0
    for frequency in HOLD_NOTES_HZ:
        note = np.sin(2 * math.pi * frequency * t) * ramp * HOLD_AMPLITUDE
        cycle[start : start + note_samples] = note
        start += note_samples + round(HOLD_GAP_S * HOLD_RATE)
    pcm = np.round(cycle * 32767).astype("<i2").tobytes()
    return PcmAudio(pcm, HOLD_RATE)


def hold_audio(path: Path | None) -> PcmAudio:
    """Load the queue's hold music, or return the hold chime when it is unset or unusable."""
    if path is None:
        return hold_tone()
    try:
        return load_wav(path)
    except (OSError, ValueError) as exc:
        logger.warning("hold music %s unusable, playing the hold chime: %s", path, exc)
        return hold_tone()


def announcement_text(position: int, eta_s: float | None) -> str:
    """Return the sentence that tells a waiting caller its position and expected wait."""
    text = f"You are number {position} in the queue."
    if eta_s is not None:
        minutes = max(1, round(eta_s / 60))
        unit = "minute" if minutes == 1 else "minutes"
        text += f" The expected wait is about {minutes} {unit}."
    return text
