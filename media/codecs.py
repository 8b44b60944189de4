"""Audio codecs for RTP legs, looked up by their SDP encoding name.

A codec converts s16 mono PCM at its `sample_rate` to RTP payloads and back.
Encoders and decoders may keep state between frames (G.722 is ADPCM), so each
RTP stream creates its own with `new_encoder` and `new_decoder`. `clock_rate`
is the RTP timestamp rate from the SDP rtpmap. It differs from the sample
rate for G.722, whose clock stays 8000 although it samples at 16 kHz
(RFC 3551 section 4.5.2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from media import g711

Coder = Callable[[bytes], bytes]


@dataclass(frozen=True, slots=True)
class Codec:
    """One audio codec: its SDP name, static payload type, rates and coder factories."""

    name: str
    static_payload_type: int | None
    clock_rate: int
    sample_rate: int
    new_encoder: Callable[[], Coder]
    new_decoder: Callable[[], Coder]


def _stateless(coder: Coder) -> Callable[[], Coder]:
    return lambda: coder


PCMU = Codec("PCMU", 0, 8000, 8000, _stateless(g711.ulaw_encode), _stateless(g711.ulaw_decode))
PCMA = Codec("PCMA", 8, 8000, 8000, _stateless(g711.alaw_encode), _stateless(g711.alaw_decode))

_REGISTRY: dict[str, Codec] = {codec.name: codec for codec in (PCMU, PCMA)}


def register_codec(codec: Codec) -> None:
    """Add or replace a codec under its upper-case SDP encoding name."""
    _REGISTRY[codec.name.upper()] = codec


def get_codec(name: str) -> Codec:
    """Return the codec for an SDP encoding name (case-insensitive). Raises KeyError if unknown."""
    codec = _REGISTRY.get(name.upper())
    if codec is not None:
        # A registered codec is returned without the Python call of `_load_optional_codecs`,
        # because loading the optional codecs never replaces a registered one.
        return codec
    _load_optional_codecs()
    try:
        return _REGISTRY[name.upper()]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"no codec named {name!r}; known codecs: {known}") from None


def codec_names() -> list[str]:
    """Return the encoding names of all registered codecs, in preference order for offers."""
    _load_optional_codecs()
    return list(_REGISTRY)


def _load_optional_codecs() -> None:
    if "G722" not in _REGISTRY:
        from media.g722 import G722

        if G722 is not None:
            register_codec(G722)
