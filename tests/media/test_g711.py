from __future__ import annotations

import warnings

import numpy as np

from media import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the CPython reference coder, present up to Python 3.12

ALL_SAMPLES = np.arange(-32768, 32768, dtype="<i2").tobytes()
ALL_CODES = bytes(range(256))


def test_ulaw_encode_matches_reference_for_every_sample() -> None:
    assert g711.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES, 2)


def test_alaw_encode_matches_reference_for_every_sample() -> None:
    assert g711.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES, 2)


def test_decoders_match_reference_for_every_code() -> None:
    assert g711.ulaw_decode(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert g711.alaw_decode(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


def test_silence_bytes_decode_to_near_zero() -> None:
    assert abs(np.frombuffer(g711.ulaw_decode(bytes([g711.ULAW_SILENCE])), "<i2")[0]) == 0
    assert abs(np.frombuffer(g711.alaw_decode(bytes([g711.ALAW_SILENCE])), "<i2")[0]) <= 8


def test_tone_survives_round_trip() -> None:
    t = np.arange(8000) / 8000
    tone = (10000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    for encode, decode in (
        (g711.ulaw_encode, g711.ulaw_decode),
        (g711.alaw_encode, g711.alaw_decode),
    ):
        back = np.frombuffer(decode(encode(tone.tobytes())), "<i2").astype(float)
        error = back - tone
        snr_db = 10 * np.log10((tone.astype(float) ** 2).mean() / (error**2).mean())
        assert snr_db > 30
