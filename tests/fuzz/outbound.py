"""Random outbound programs and core set-up shared by the fuzz tests that compare two RTP sessions.

Each tick of such a test draws one number. `OutboundActions.apply` turns a low
draw into the same prompt, digit, outbound source or tap change on every side.
A higher draw is left to the test's own actions.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from media.audio import PcmAudio
from media.leg import MediaLeg
from media.rtp_session import RtpSession, RtpStats

# Draws below this are outbound actions, and the test owns the range above it.
OUTBOUND_SHARE = 0.14


class OutboundSide(Protocol):
    """One session and leg of a comparison, with its running prompts and its tap."""

    @property
    def session(self) -> RtpSession: ...

    @property
    def leg(self) -> MediaLeg: ...

    @property
    def prompts(self) -> list[asyncio.Task[Any]]: ...

    def tap(self, frame: PcmAudio | None) -> None: ...


def core_arguments(core: Any, stats: RtpStats) -> tuple[Any, ...]:
    """Return the constructor arguments of a session core that starts where `core` started.

    The new core has the SSRC, sequence, timestamp and codec settings of `core`
    (a C `SessionCore` or a `PythonSessionCore`) and counts into `stats`.
    """
    return (
        core.ssrc,
        core.sequence,
        core.timestamp,
        core.timestamp_step,
        core.payload_type,
        core.max_lag_ms,
        core.frame_ms,
        stats,
        core.silence,
    )


def outbound_source(
    rng: random.Random,
    frame_bytes: int,
    rate: int,
    *,
    failure_share: float = 0.0,
    gap_share: float = 0.3,
) -> Callable[[], PcmAudio | None]:
    """Return an outbound source whose frames, gaps and failures follow `rng`'s draws.

    Its pattern of seven frames repeats: a share `failure_share` of them raise
    RuntimeError, the next `gap_share` are None, the rest carry random audio.
    """
    pattern: list[PcmAudio | str | None] = []
    for _ in range(7):
        draw = rng.random()
        if draw < failure_share:
            pattern.append("raise")
        elif draw < failure_share + gap_share:
            pattern.append(None)
        else:
            pattern.append(PcmAudio(rng.randbytes(frame_bytes), rate))
    position = 0

    def next_frame() -> PcmAudio | None:
        nonlocal position
        frame = pattern[position % len(pattern)]
        position += 1
        if isinstance(frame, str):
            raise RuntimeError("outbound source failed on request")
        return frame

    return next_frame


class OutboundActions:
    """Applies one random outbound action alike to every side of a comparison."""

    def __init__(
        self,
        rng: random.Random,
        sides: Sequence[OutboundSide],
        *,
        failure_share: float = 0.0,
        gap_share: float = 0.3,
    ) -> None:
        self._rng = rng
        self._sides = sides
        self._failure_share = failure_share
        self._gap_share = gap_share
        first = sides[0]
        self._rate = first.session.sample_rate
        self._frame_bytes = first.leg._frame_bytes
        self._tapping = False

    async def apply(self, action: float) -> bool:
        """Apply the action that the draw `action` names; False from OUTBOUND_SHARE up."""
        rng, sides = self._rng, self._sides
        if action < 0.03:
            pcm = rng.randbytes(self._frame_bytes * rng.randint(1, 6) - 2 * rng.randint(0, 20))
            for side in sides:
                side.prompts.append(asyncio.ensure_future(side.leg.play(PcmAudio(pcm, self._rate))))
            # Start every prompt, which sends its first frames early.
            await asyncio.sleep(0)
        elif action < 0.05:
            digit = rng.choice("0123456789*#")
            duration_ms = rng.choice((40, 60, 100))
            for side in sides:
                side.session.send_dtmf(digit, duration_ms)
        elif action < 0.06:
            source_seed = rng.getrandbits(32)
            for side in sides:
                source = outbound_source(
                    random.Random(source_seed),
                    self._frame_bytes,
                    self._rate,
                    failure_share=self._failure_share,
                    gap_share=self._gap_share,
                )
                side.leg.set_outbound_source(source)
        elif action < 0.12:
            for side in sides:
                side.leg.set_outbound_source(None)
        elif action < OUTBOUND_SHARE:
            self._tapping = not self._tapping
            for side in sides:
                if self._tapping:
                    side.leg.add_outbound_tap(side.tap)
                else:
                    side.leg.remove_outbound_tap(side.tap)
        else:
            return False
        return True
