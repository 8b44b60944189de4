"""G.711 µ-law (PCMU) and A-law (PCMA) with lookup tables (ITU-T G.711).

Decoding indexes a 256-entry table. Encoding indexes a 65,536-entry table
built once from the reference segment algorithm, so both directions are one
numpy gather per frame.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_BIAS = 0x21
_CLIP = 8159
_ULAW_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def _ulaw_encode_sample(sample: int) -> int:
    # Segment search on 14-bit magnitudes, as in the CCITT reference coder.
    value = sample >> 2
    mask = 0x7F if value < 0 else 0xFF
    value = min(-value if value < 0 else value, _CLIP) + _BIAS
    segment = 0
    while segment < 8 and value > _ULAW_SEGMENT_ENDS[segment]:
        segment += 1
    if segment >= 8:
        return 0x7F ^ mask
    return (segment << 4 | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _ulaw_decode_byte(code: int) -> int:
    code = ~code & 0xFF
    sign = code & 0x80
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    magnitude -= 0x84
    return -magnitude if sign else magnitude


def _alaw_encode_sample(sample: int) -> int:
    # A-law works on 13-bit magnitudes, and its sign bit is set for positive values.
    sign = 0x80 if sample >= 0 else 0
    magnitude = sample if sample >= 0 else -sample - 1
    magnitude = min(magnitude, 32767) >> 3
    if magnitude < 32:
        code = magnitude >> 1
    else:
        exponent = magnitude.bit_length() - 5
        mantissa = (magnitude >> exponent) & 0x0F
        code = exponent << 4 | mantissa
    return (sign | code) ^ 0x55


def _alaw_decode_byte(code: int) -> int:
    code ^= 0x55
    sign = code & 0x80
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else (mantissa << 4) + 264 << exponent - 1
    return magnitude if sign else -magnitude


def _build_tables() -> tuple[
    npt.NDArray[np.int16], npt.NDArray[np.int16], npt.NDArray[np.uint8], npt.NDArray[np.uint8]
]:
    # Little-endian tables, so a gather from them is s16le PCM as it is.
    ulaw_decode = np.array([_ulaw_decode_byte(c) for c in range(256)], dtype="<i2")
    alaw_decode = np.array([_alaw_decode_byte(c) for c in range(256)], dtype="<i2")
    samples = range(-32768, 32768)
    ulaw_encode = np.array([_ulaw_encode_sample(s) for s in samples], dtype=np.uint8)
    alaw_encode = np.array([_alaw_encode_sample(s) for s in samples], dtype=np.uint8)
    return ulaw_decode, alaw_decode, ulaw_encode, alaw_encode


_ULAW_DECODE, _ALAW_DECODE, _ULAW_ENCODE, _ALAW_ENCODE = _build_tables()

ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _samples(pcm: bytes) -> npt.NDArray[np.int32]:
    if len(pcm) % 2:
        raise ValueError(f"G.711 encoder input of {len(pcm)} bytes is not whole 16-bit samples")
    return np.frombuffer(pcm, dtype="<i2").astype(np.int32) + 32768


def ulaw_encode(pcm: bytes) -> bytes:
    """Encode s16le PCM to µ-law, one byte per sample."""
    return _ULAW_ENCODE[_samples(pcm)].tobytes()


def ulaw_decode(payload: bytes) -> bytes:
    """Decode µ-law bytes to s16le PCM."""
    return _ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)].astype("<i2").tobytes()


def ulaw_decode_samples(payload: bytes) -> npt.NDArray[np.int16]:
    """Decode µ-law bytes to a new array of s16le samples."""
    return _ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def alaw_decode_samples(payload: bytes) -> npt.NDArray[np.int16]:
    """Decode A-law bytes to a new array of s16le samples."""
    return _ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def alaw_encode(pcm: bytes) -> bytes:
    """Encode s16le PCM to A-law, one byte per sample."""
    return _ALAW_ENCODE[_samples(pcm)].tobytes()


def alaw_decode(payload: bytes) -> bytes:
    """Decode A-law bytes to s16le PCM."""
    return _ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)].astype("<i2").tobytes()
