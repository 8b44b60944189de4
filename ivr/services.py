"""Services the engine calls but does not own: the ACD queue and voicemail recording."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from media.audio import PcmAudio


@dataclass(frozen=True, slots=True)
class QueueRequest:
    """What the flow asks of the ACD for this caller.

    `priority` is 0 (normal) to 9 (highest). `skills` are the agent skills
    required. `attributes` carries flow variables the agent desktop may show.
    """

    queue: str
    priority: int
    skills: tuple[str, ...] = ()
    language: str = "en-US"
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueuePlacement:
    """Where the caller landed: 1-based position and the expected wait in seconds."""

    position: int
    expected_wait_s: float | None = None


class QueueError(Exception):
    """The ACD rejected the request (unknown queue, queue full, no agents logged in)."""


class QueueService(Protocol):
    """The ACD as the IVR sees it."""

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
    """Where voicemail recordings go; returns a reference stored in the flow variables."""

    async def save(self, call_id: str, flow: str, recording: Recording) -> str: ...
