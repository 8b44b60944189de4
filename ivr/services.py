"""Services the engine calls but does not own: the ACD queue and voicemail recording."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from media.audio import PcmAudio


@dataclass(frozen=True, slots=True)
class QueueRequest:
    """The request a flow sends to the ACD for this caller.

    `priority` is 0 (normal) to 9 (highest). `skills` are the agent skills
    required. `reason` is a short token naming the rule or step that set the
    priority (a-z, 0-9, `_`, `.`, `-`), safe to log. `attributes` are the facts the agent
    desktop shows, and they may contain caller data.
    """

    queue: str
    priority: int
    skills: tuple[str, ...] = ()
    language: str = "en-US"
    attributes: dict[str, str] = field(default_factory=dict)
    reason: str = "priority"

    @property
    def shown_reason(self) -> str:
        """Return the reason the agent sees: none at priority 0, where the caller never jumps."""
        return self.reason if self.priority > 0 else ""


@dataclass(frozen=True, slots=True)
class QueuePlacement:
    """The caller's place in the queue: 1-based position and expected wait in seconds."""

    position: int
    expected_wait_s: float | None = None


class QueueError(Exception):
    """The ACD rejected the request (unknown queue, queue full, no agents logged in)."""


class QueueService(Protocol):
    """The ACD interface that the IVR calls."""

    async def enqueue(self, call_id: str, request: QueueRequest) -> QueuePlacement:
        """Put the call in a queue; raise QueueError when it cannot be queued."""
        ...


@dataclass(frozen=True, slots=True)
class Recording:
    """A recorded message; `ended_by` is "terminator", "silence", "max_duration" or "hangup"."""

    audio: PcmAudio
    ended_by: str


@runtime_checkable
class RecordingChannel(Protocol):
    """A `CallChannel` that can also record the caller (needed by `record` steps).

    `record` plays no prompt; the engine plays the prompt first. It plays a
    short beep when `beep` is True, then keeps the caller's audio until the
    terminator key, `silence_timeout_s` of silence after speech, or
    `max_duration_s`. A hangup while recording returns what was recorded with
    `ended_by="hangup"` instead of raising, so a voicemail is not lost.
    """

    async def record(
        self,
        *,
        max_duration_s: float,
        silence_timeout_s: float,
        beep: bool,
        terminator: str | None,
    ) -> Recording: ...


class RecordingStore(Protocol):
    """Storage for voicemail recordings; `save` returns a reference for the flow variables."""

    async def save(self, call_id: str, flow: str, recording: Recording) -> str: ...
