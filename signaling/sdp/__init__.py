"""SDP (RFC 8866) parsing and serialization, and RFC 3264 offer/answer for audio.

No I/O: bodies in, descriptions and bodies out. The SIP layer carries the
bodies, and this package decides what a call's audio stream is.
"""

from signaling.sdp.codecs import G722, OPUS, PCMA, PCMU, Codec, offered_codecs
from signaling.sdp.errors import NoCommonCodec, SdpError
from signaling.sdp.model import (
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
    Timing,
)
from signaling.sdp.offer_answer import (
    AudioAnswer,
    NegotiatedAudio,
    accept_answer,
    answer_audio,
    build_audio_offer,
    create_audio_offer,
)
from signaling.sdp.parser import DEFAULT_LIMITS, SdpLimits, parse
from signaling.sdp.webrtc import (
    WebRtcOffer,
    add_telephone_event,
    check_webrtc_offer,
    complete_webrtc_answer,
    prepare_webrtc_offer,
)

__all__ = [
    "DEFAULT_LIMITS",
    "G722",
    "OPUS",
    "PCMA",
    "PCMU",
    "Attribute",
    "AudioAnswer",
    "Codec",
    "Connection",
    "MediaDescription",
    "NegotiatedAudio",
    "NoCommonCodec",
    "Origin",
    "SdpError",
    "SdpLimits",
    "SessionDescription",
    "Timing",
    "WebRtcOffer",
    "accept_answer",
    "add_telephone_event",
    "answer_audio",
    "build_audio_offer",
    "check_webrtc_offer",
    "complete_webrtc_answer",
    "create_audio_offer",
    "offered_codecs",
    "parse",
    "prepare_webrtc_offer",
]
