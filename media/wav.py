"""WAV (RIFF) files to and from `PcmAudio`.

The reader takes the formats prompt files come in: integer PCM of 8, 16, 24
or 32 bits, 32- or 64-bit float, G.711 A-law and µ-law, WAVE_FORMAT_EXTENSIBLE
wrapping any of them, any sample rate, any channel count. Channels are
averaged to mono. The writer writes 16-bit PCM with `channels` channels.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media import g711
from media.audio import PcmAudio

MAX_WAV_BYTES = 512 * 1024 * 1024

_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_ALAW = 0x0006
_FORMAT_MULAW = 0x0007
_FORMAT_EXTENSIBLE = 0xFFFE


def _chunks(data: bytes) -> dict[bytes, bytes]:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV file: missing RIFF/WAVE header")
    chunks: dict[bytes, bytes] = {}
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body = data[offset + 8 : offset + 8 + size]
        chunks.setdefault(chunk_id, body)
        offset += 8 + size + (size & 1)
    if b"fmt " not in chunks:
        raise ValueError("WAV file has no fmt chunk")
    if b"data" not in chunks:
        raise ValueError("WAV file has no data chunk")
    return chunks


def _to_float(raw: bytes, format_tag: int, bits: int) -> npt.NDArray[np.float64]:
    if format_tag == _FORMAT_PCM:
        if bits == 8:
            return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
        if bits == 16:
            return np.frombuffer(raw, dtype="<i2").astype(np.float64)
        if bits == 24:
            triples = np.frombuffer(raw[: len(raw) // 3 * 3], dtype=np.uint8).reshape(-1, 3)
            values = (
                triples[:, 0].astype(np.int32)
                | triples[:, 1].astype(np.int32) << 8
                | triples[:, 2].astype(np.int32) << 16
            )
            values = np.where(values >= 1 << 23, values - (1 << 24), values)
            return values.astype(np.float64) / 256.0
        if bits == 32:
            return np.frombuffer(raw, dtype="<i4").astype(np.float64) / 65536.0
    elif format_tag == _FORMAT_FLOAT:
        if bits == 32:
            return np.frombuffer(raw, dtype="<f4").astype(np.float64) * 32768.0
        if bits == 64:
            return np.frombuffer(raw, dtype="<f8") * 32768.0
    elif format_tag == _FORMAT_ALAW and bits == 8:
        return np.frombuffer(g711.alaw_decode(raw), dtype="<i2").astype(np.float64)
    elif format_tag == _FORMAT_MULAW and bits == 8:
        return np.frombuffer(g711.ulaw_decode(raw), dtype="<i2").astype(np.float64)
    raise ValueError(f"unsupported WAV sample format: tag 0x{format_tag:04x}, {bits} bits")


def parse_wav(data: bytes) -> PcmAudio:
    """Decode the bytes of a WAV file to mono s16 `PcmAudio` at the file's rate."""
    chunks = _chunks(data)
    fmt = chunks[b"fmt "]
    if len(fmt) < 16:
        raise ValueError(f"WAV fmt chunk too short: {len(fmt)} bytes")
    format_tag, channels, sample_rate, _byte_rate, block_align, bits = struct.unpack_from(
        "<HHIIHH", fmt
    )
    if format_tag == _FORMAT_EXTENSIBLE:
        if len(fmt) < 26:
            raise ValueError("WAV extensible fmt chunk too short")
        (format_tag,) = struct.unpack_from("<H", fmt, 24)
    if channels < 1:
        raise ValueError("WAV file declares 0 channels")
    if sample_rate < 1:
        raise ValueError("WAV file declares sample rate 0")
    if block_align < 1:
        raise ValueError("WAV file declares block align 0")
    raw = chunks[b"data"]
    raw = raw[: len(raw) // block_align * block_align]
    samples = _to_float(raw, format_tag, bits)
    mono = samples.reshape(-1, channels).mean(axis=1)
    pcm = np.clip(np.rint(mono), -32768, 32767).astype("<i2").tobytes()
    return PcmAudio(pcm, sample_rate)


def load_wav(path: Path | str) -> PcmAudio:
    """Read a WAV file as mono s16 `PcmAudio`. Raises ValueError when it is not a readable WAV."""
    file_path = Path(path)
    size = file_path.stat().st_size
    if size > MAX_WAV_BYTES:
        raise ValueError(f"WAV file {file_path.name} is {size} bytes, above {MAX_WAV_BYTES}")
    return parse_wav(file_path.read_bytes())


def wav_bytes(pcm: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """Return a canonical 44-byte-header WAV of interleaved s16le `pcm`."""
    block_align = 2 * channels
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        _FORMAT_PCM,
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        16,
        b"data",
        len(pcm),
    )
    return header + pcm


def save_wav(path: Path | str, audio: PcmAudio) -> None:
    """Write `audio` as a 16-bit mono WAV file."""
    Path(path).write_bytes(wav_bytes(audio.pcm, audio.sample_rate))
