"""Call recordings of one node: where the files go, when they start, and their event.

`CallRecordings.attach_to` gives each answered call a `CallRecording` on the
caller's media leg. With `enabled` it is built and started at once, else the
call channel builds it at the flow's first `recording` option, and
`recording: start` starts it. When it stops (by the flow, at hangup
or on a write error) the node publishes `call.recording` with the file's
path and its pauses, before the call's `call.ended`, so the CDR gets both.
Files are named `<directory>/<YYYY-MM-DD>/<UTC time>-<call id>-<hash>.wav`:
the call id is cut to safe characters, and the hash of the full call id
keeps two ids that differ only in cut characters apart.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from media.call_recording import CallRecording, RecordingSummary
from media.channel import MediaLegChannel
from media.leg import MediaLeg
from voxgate.callevents import CallLegEvents

MAX_ID_CHARS = 48
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    """`enabled` records every call from its answer; files go under `directory`."""

    directory: Path
    enabled: bool = False
    sample_rate: int = 8000


class CallRecordings:
    """Create, name and report the recordings of one node's calls."""

    def __init__(
        self, config: RecordingConfig, legs: CallLegEvents, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self._legs = legs
        self._clock = clock

    def path_for(self, call_id: str, at: float | None = None) -> Path:
        """Return a new file path for `call_id` at Unix time `at` (default now), in its UTC day."""
        now = dt.datetime.fromtimestamp(self._clock() if at is None else at, dt.UTC)
        safe = _UNSAFE.sub("_", call_id)[:MAX_ID_CHARS].strip("._") or "call"
        digest = hashlib.sha256(call_id.encode("utf-8")).hexdigest()[:8]
        name = f"{now:%Y%m%dT%H%M%S}Z-{safe}-{digest}.wav"
        return self.config.directory / f"{now:%Y-%m-%d}" / name

    def attach_to(self, channel: MediaLegChannel, call_id: str) -> None:
        """Give the answered call on `channel` its recording, started now when recording is enabled.

        Otherwise the channel builds the recording at the flow's first recording
        action, because most calls never record.
        """
        if self.config.enabled:
            channel.recording = self.attach(channel.leg, call_id)
        else:
            channel.recording_factory = functools.partial(
                self.attach, channel.leg, call_id, self._clock()
            )

    def attach(
        self, leg: MediaLeg, call_id: str, answered_at: float | None = None
    ) -> CallRecording:
        """Give the call on `leg` its recording, started now when recording is enabled.

        The file name carries the time of this call's answer, `answered_at` (Unix
        seconds, now by default). It is built only when the recording starts,
        because most calls never record.
        """
        if answered_at is None:
            answered_at = self._clock()
        recording = CallRecording(
            leg,
            functools.partial(self.path_for, call_id, answered_at),
            call_id=call_id,
            sample_rate=self.config.sample_rate,
            clock=self._clock,
            on_stopped=lambda summary: self._publish(call_id, summary),
        )
        if self.config.enabled:
            recording.control("start")
        return recording

    def _publish(self, call_id: str, summary: RecordingSummary) -> None:
        self._legs.recording(
            call_id,
            path=str(summary.path),
            format="wav",
            channels=["caller", "heard"],
            sample_rate=summary.sample_rate,
            started_at=summary.started_at,
            stopped_at=summary.stopped_at,
            duration_ms=summary.duration_ms,
            pauses=[
                {
                    "paused_at": pause.paused_at,
                    "resumed_at": pause.resumed_at,
                    "offset_ms": pause.offset_ms,
                    "duration_ms": pause.duration_ms,
                }
                for pause in summary.pauses
            ],
            error=summary.error,
        )
