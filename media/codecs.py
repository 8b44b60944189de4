"""Audio codecs for RTP legs, looked up by their SDP encoding name.

Each codec converts 20 ms (or any whole number of samples) of s16 mono PCM at
its `sample_rate` to an RTP payload and back. `clock_rate` is the RTP
timestamp rate from the SDP rtpmap, which differs from the sample rate for
G.722 (RFC 3551 section 4.5.2 keeps its clock at 8000 for historical reasons).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from media import g711


@dataclass(frozen=True, slots=True)
class Codec:
    """One audio codec: its SDP name, static payload type, rates and coder functions."""

    name: str
    static_payload_type: int | None
    clock_rate: int
    sample_rate: int
    encode: Callable[[bytes], bytes]
    decode: Callable[[bytes], bytes]
    silence_byte: int

    def silence_payload(self, samples: int) -> bytes:
        """Return an encoded payload of `samples` samples of digital silence."""
        return bytes([self.silence_byte]) * samples


PCMU = Codec("PCMU", 0, 8000, 8000, g711.ulaw_encode, g711.ulaw_decode, g711.ULAW_SILENCE)
PCMA = Codec("PCMA", 8, 8000, 8000, g711.alaw_encode, g711.alaw_decode, g711.ALAW_SILENCE)

_REGISTRY: dict[str, Codec] = {codec.name: codec for codec in (PCMU, PCMA)}


def register_codec(codec: Codec) -> None:
    """Add or replace a codec under its upper-case SDP encoding name."""
    _REGISTRY[codec.name.upper()] = codec


def get_codec(name: str) -> Codec:
    """Return the codec for an SDP encoding name (case-insensitive); KeyError if unknown."""
    try:
        return _REGISTRY[name.upper()]
    except KeyError:
        raise KeyError(f"no codec named {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def codec_names() -> list[str]:
    """Return the encoding names of all registered codecs."""
    return sorted(_REGISTRY)
