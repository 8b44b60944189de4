"""Stereo WAV recording of a call: caller on the left channel, the other party on the right.

The recorder is clocked by `tick` (one 20 ms frame per call). Each tick takes
one queued frame per side, or silence when a side sent nothing, so the two
channels stay aligned in time. While `paused`, ticks write silence on both
channels and audio added meanwhile is discarded, so the file keeps the
call's timing but holds nothing said during the pause. Writes go through a
64 KiB buffer, so the event loop makes a system call about every 4 seconds
of 8 kHz audio. The header sizes are fixed up on close.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from pathlib import Path

import numpy as np

from media.audio import PcmAudio
from media.resample import StreamResampler
from media.transport import frame_samples
from media.wav import wav_bytes

logger = logging.getLogger("media.recorder")

_MAX_QUEUED_FRAMES = 10


class StereoRecorder:
    """Write a two-channel 16-bit WAV file at `sample_rate`."""

    def __init__(self, path: Path, sample_rate: int = 8000, *, call_id: str = "-") -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.call_id = call_id
        self.paused = False
        self.frames_written = 0
        self._frame_bytes = frame_samples(sample_rate) * 2
        self._left: deque[bytes] = deque()
        self._right: deque[bytes] = deque()
        self._resamplers: dict[tuple[str, int], StreamResampler] = {}
        self._file = path.open("wb", buffering=64 * 1024)
        self._file.write(wav_bytes(b"", sample_rate, channels=2))
        self._data_bytes = 0
        logger.info("call %s: recording started", call_id)

    def add_left(self, frame: PcmAudio) -> None:
        self._add(self._left, "left", frame)

    def add_right(self, frame: PcmAudio) -> None:
        self._add(self._right, "right", frame)

    def _add(self, queue: deque[bytes], side: str, frame: PcmAudio) -> None:
        if self.paused:
            return
        pcm = frame.pcm
        if frame.sample_rate != self.sample_rate:
            key = (side, frame.sample_rate)
            resampler = self._resamplers.get(key)
            if resampler is None:
                resampler = StreamResampler(frame.sample_rate, self.sample_rate)
                self._resamplers[key] = resampler
            pcm = resampler.process(pcm)
        if queue and len(queue[-1]) < self._frame_bytes:
            pcm = queue.pop() + pcm
        queue.append(pcm[: self._frame_bytes].ljust(self._frame_bytes, b"\0"))
        while len(queue) > _MAX_QUEUED_FRAMES:
            queue.popleft()

    def tick(self) -> None:
        """Write one 20 ms stereo frame from the queued audio, or silence while paused."""
        if self._file.closed:
            return
        silence = bytes(self._frame_bytes)
        if self.paused:
            self._left.clear()
            self._right.clear()
        left = np.frombuffer(self._left.popleft() if self._left else silence, dtype="<i2")
        right = np.frombuffer(self._right.popleft() if self._right else silence, dtype="<i2")
        interleaved = np.column_stack([left, right]).astype("<i2").tobytes()
        self._file.write(interleaved)
        self._data_bytes += len(interleaved)
        self.frames_written += 1

    def close(self) -> None:
        """Fix the RIFF and data sizes and close the file. Safe to call twice."""
        if self._file.closed:
            return
        self._file.seek(4)
        self._file.write(struct.pack("<I", 36 + self._data_bytes))
        self._file.seek(40)
        self._file.write(struct.pack("<I", self._data_bytes))
        self._file.close()
        logger.info(
            "call %s: recording stopped, %d ms written", self.call_id, self.frames_written * 20
        )
