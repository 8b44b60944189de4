"""Browser offers on their way into aiortc, and aiortc answers on their way out.

aiortc 1.16 negotiates every audio and video section of an offer, whatever its
port, and fails the whole offer when one of them has no common codec (a
browser offering H.264 with packetization-mode 0, for example). It also
raises ValueError, AssertionError, KeyError or StopIteration on attribute
syntax it does not expect, drops static payload types that have no a=rtpmap
line, and never negotiates telephone-event.

So the WebRTC leg hands aiortc an offer cut down to the one audio section we
use (`prepare_webrtc_offer`), checked for everything aiortc would choke on,
and completes aiortc's answer afterwards (`complete_webrtc_answer`): the
other sections come back rejected with port 0 in the offer's order, and
telephone-event is added when the browser offered it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from signaling.sdp.codecs import (
    STATIC_AUDIO_PAYLOAD_TYPES,
    Codec,
    find_telephone_event,
    is_number,
    offered_codecs,
    parse_rtpmap,
    payload_type_of,
    split_fmtp,
)
from signaling.sdp.errors import SdpError
from signaling.sdp.model import Attribute, MediaDescription, SessionDescription
from signaling.sdp.parser import parse

# The audio codecs of aiortc 1.16 (aiortc/codecs/__init__.py), matched by name and clock rate.
AIORTC_AUDIO_CODECS = (
    Codec("opus", 48000, 2),
    Codec("G722", 8000),
    Codec("PCMU", 8000),
    Codec("PCMA", 8000),
)
WEBRTC_PROFILES = frozenset(
    {"UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP", "TCP/TLS/RTP/SAVPF", "RTP/SAVPF"}
)
# Attributes that describe the ICE and DTLS transport rather than the media.
# Under BUNDLE (RFC 8843) every section uses the transport of the first one.
TRANSPORT_ATTRIBUTES = (
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "fingerprint",
    "setup",
    "candidate",
    "end-of-candidates",
    "rtcp-mux",
)
DTLS_SETUP_VALUES = frozenset({"actpass", "active", "passive"})
# aiortc converts these a=fmtp parameters with int().
_INTEGER_FMTP_PARAMETERS = frozenset(
    {"apt", "max-fr", "max-fs", "maxplaybackrate", "minptime", "stereo", "useinbandfec"}
)
_RTCP_PAYLOAD_TYPES = range(72, 77)
_SEPARATORS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class WebRtcOffer:
    """An offer cut down for aiortc: `sdp` has one audio section, the one at
    `audio_index` in the browser's offer."""

    sdp: str
    audio_index: int


def prepare_webrtc_offer(offer: SessionDescription) -> WebRtcOffer:
    """Cut a browser offer down to its first audio section and check it for aiortc.

    Under BUNDLE, transport attributes (ICE, DTLS, candidates) missing from
    the audio section are taken from the first section of the group, which
    carries the transport. Static payload types without a=rtpmap get one,
    because aiortc drops them otherwise, and a section without a direction
    attribute gets the session's (or sendrecv, the RFC 8866 default).

    Raises SdpError naming the problem when aiortc would reject or crash on
    the offer, or when the offer has no audio stream.
    """
    if not offer.media:
        raise SdpError("offer has no media sections")
    index = _audio_index(offer)
    audio = _with_bundle_transport(offer, offer.media[index])
    audio = _complete_static_rtpmaps(audio)
    if audio.direction is None:
        # aiortc reads directions only at media level and fails on a section without one.
        audio = audio.with_attributes((*audio.attributes, Attribute(offer.media_direction(audio))))

    mid = audio.first_value("mid")
    attributes = [a for a in offer.attributes if a.name != "group"]
    if mid is not None and _in_bundle(offer, mid):
        attributes.insert(0, Attribute("group", f"BUNDLE {mid}"))
    reduced = replace(offer, attributes=tuple(attributes), media=(audio,))

    _check_session(reduced)
    _check_audio_section(reduced, audio, index)
    text = reduced.to_text()
    if _SEPARATORS.search(text):
        raise SdpError(
            "offer contains a control character (such as a form feed) that aiortc reads "
            "as a line end"
        )
    return WebRtcOffer(text, index)


def check_webrtc_offer(offer: SessionDescription) -> None:
    """Raise SdpError if `prepare_webrtc_offer` would, and return None otherwise.

    Pass aiortc the `sdp` of `prepare_webrtc_offer`, not the browser's offer,
    because aiortc fails on video sections that this check does not examine.
    """
    prepare_webrtc_offer(offer)


def complete_webrtc_answer(answer_sdp: str, offer: SessionDescription) -> str:
    """Turn aiortc's answer to a prepared offer into the answer for the browser's offer.

    Every section of the offer other than the prepared audio section comes
    back with port 0 (rejected, RFC 3264 section 6) and its a=mid, in the
    offer's order. The BUNDLE group keeps only mids the offer bundled, and
    telephone-event is added as `add_telephone_event` does.
    Raises SdpError when the answer is invalid or has no audio section.
    """
    answer = parse(add_telephone_event(answer_sdp, offer))
    audio = next((m for m in answer.media if m.media == "audio"), None)
    if audio is None:
        raise SdpError("aiortc answer has no audio section")
    index = _audio_index(offer)

    media: list[MediaDescription] = []
    for position, offered in enumerate(offer.media):
        if position == index:
            media.append(audio)
            continue
        mid = offered.first_value("mid")
        mid_attributes = (Attribute("mid", mid),) if mid is not None else ()
        media.append(
            MediaDescription(
                offered.media, 0, offered.proto, offered.formats, attributes=mid_attributes
            )
        )
    bundled = {m for v in offer.attribute_values("group") for m in _bundle_mids(v)}
    restricted = [_restrict_bundle(a, bundled) for a in answer.attributes]
    return replace(
        answer,
        attributes=tuple(a for a in restricted if a is not None),
        media=tuple(media),
    ).to_text()


def _restrict_bundle(attribute: Attribute, bundled: set[str]) -> Attribute | None:
    """Keep only mids that the offer bundled in an answer's BUNDLE group (RFC 8843).

    aiortc bundles the mid of the prepared offer even when the browser did not.
    """
    if attribute.name != "group" or attribute.value is None:
        return attribute
    parts = attribute.value.split()
    if not parts or parts[0] != "BUNDLE":
        return attribute
    mids = [m for m in parts[1:] if m in bundled]
    return Attribute("group", " ".join(["BUNDLE", *mids])) if mids else None


def add_telephone_event(answer_sdp: str, offer: SessionDescription) -> str:
    """Add telephone-event to the audio section of an answer, if the offer had one to match.

    The offer's audio section is the one with the answer's a=mid, else the one
    at the same position. Telephone-event is added with the offer's payload
    type when the offer has it at the clock rate of the answer's first codec
    (8000 for G.711, 48000 for Opus) with DTMF events 0-15 in its list. The
    answer is returned unchanged when nothing is added. Raises SdpError when
    the answer is invalid.
    """
    answer = parse(answer_sdp)
    changed = False
    media = list(answer.media)
    for position, answered in enumerate(answer.media):
        if answered.media != "audio" or answered.is_rejected:
            continue
        offered = _matching_section(offer, answered, position)
        if offered is None:
            continue
        codecs = [c for c in offered_codecs(answered) if not c.is_telephone_event]
        if not codecs or any(c.is_telephone_event for c in offered_codecs(answered)):
            continue
        dtmf = find_telephone_event(offered_codecs(offered), codecs[0].clock_rate)
        if dtmf is None or dtmf.payload_type is None:
            continue
        if str(dtmf.payload_type) in answered.formats:
            continue
        media[position] = _append_format(answered, dtmf)
        changed = True
    if not changed:
        return answer_sdp
    return replace(answer, media=tuple(media)).to_text()


def _audio_index(offer: SessionDescription) -> int:
    for index, media in enumerate(offer.media):
        if media.media == "audio" and (not media.is_rejected or media.has_attribute("bundle-only")):
            return index
    kinds = ", ".join(m.media for m in offer.media)
    raise SdpError(f"offer has no audio stream (its media sections: {kinds})")


def _in_bundle(offer: SessionDescription, mid: str) -> bool:
    return any(mid in _bundle_mids(value) for value in offer.attribute_values("group"))


def _bundle_mids(group: str) -> list[str]:
    """Return the mids of an a=group:BUNDLE value, or [] for another semantics."""
    parts = group.split()
    return parts[1:] if parts and parts[0] == "BUNDLE" else []


def _with_bundle_transport(offer: SessionDescription, audio: MediaDescription) -> MediaDescription:
    """Copy transport attributes, port and c= from the BUNDLE-tagged section if audio lacks them."""
    mid = audio.first_value("mid")
    tagged: MediaDescription | None = None
    for group in offer.attribute_values("group"):
        mids = _bundle_mids(group)
        if mid is not None and mid in mids:
            tagged = next((m for m in offer.media if m.first_value("mid") == mids[0]), None)
            break
    if tagged is None or tagged is audio:
        return audio

    missing = [
        n for n in TRANSPORT_ATTRIBUTES if not audio.has_attribute(n) and not offer.has_attribute(n)
    ]
    extra = [a for a in tagged.attributes if a.name in missing]
    result = audio.with_attributes((*audio.attributes, *extra))
    if result.is_rejected and not tagged.is_rejected:
        result = replace(result, port=tagged.port)
    if result.connection is None and tagged.connection is not None:
        result = replace(result, connections=tagged.connections)
    return result


def _complete_static_rtpmaps(media: MediaDescription) -> MediaDescription:
    """Add a=rtpmap for static audio payload types that the section lists without one."""
    mapped = set()
    for value in media.attribute_values("rtpmap"):
        mapped.add(value.split(" ", 1)[0])
    added: list[Attribute] = []
    for format_ in media.formats:
        payload_type = payload_type_of(format_)
        if payload_type is None or format_ in mapped:
            continue
        static = STATIC_AUDIO_PAYLOAD_TYPES.get(payload_type)
        if static is None:
            continue
        mapped.add(format_)
        added.append(Attribute("rtpmap", Codec(*static).rtpmap_value(payload_type)))
    if not added:
        return media
    attributes = list(media.attributes)
    last_rtpmap = max(
        (i for i, a in enumerate(attributes) if a.name == "rtpmap"), default=len(attributes) - 1
    )
    attributes[last_rtpmap + 1 : last_rtpmap + 1] = added
    return media.with_attributes(attributes)


def _check_session(offer: SessionDescription) -> None:
    for value in offer.attribute_values("setup"):
        _check_setup(value, "session")
    for value in offer.attribute_values("fingerprint"):
        _check_fingerprint(value, "session")
    if offer.connection is not None:
        _check_connection_type(offer.connection.nettype, offer.connection.addrtype, "session")


def _check_audio_section(offer: SessionDescription, audio: MediaDescription, index: int) -> None:
    where = f"audio stream {index + 1}"
    if audio.proto not in WEBRTC_PROFILES:
        raise SdpError(
            f"{where} uses transport {audio.proto}, but a WebRTC call needs DTLS-SRTP "
            "(UDP/TLS/RTP/SAVPF)"
        )
    if audio.port_count is not None:
        raise SdpError(f"{where} has a port count on its m= line, which WebRTC does not use")
    for format_ in audio.formats:
        payload_type = payload_type_of(format_)
        if payload_type is None or payload_type in _RTCP_PAYLOAD_TYPES:
            raise SdpError(
                f"{where} lists format '{format_[:8]}', which is not an RTP payload type"
            )
    if not audio.has_attribute("rtcp-mux"):
        raise SdpError(
            f"{where} has no a=rtcp-mux, and the WebRTC stack requires RTP and RTCP on one port"
        )
    if not _value(offer, audio, "ice-ufrag") or not _value(offer, audio, "ice-pwd"):
        raise SdpError(f"{where} has no a=ice-ufrag or a=ice-pwd")
    setup = _value(offer, audio, "setup")
    if setup is None:
        raise SdpError(f"{where} has no a=setup for DTLS")
    _check_setup(setup, where)
    fingerprints = audio.attribute_values("fingerprint") + offer.attribute_values("fingerprint")
    if not fingerprints:
        raise SdpError(f"{where} has no a=fingerprint for DTLS")
    for connection in audio.connections:
        _check_connection_type(connection.nettype, connection.addrtype, where)
    for attribute in audio.attributes:
        if attribute.value is not None:
            _check_attribute(attribute.name, attribute.value, where, audio)

    offered = [c for c in offered_codecs(audio) if not c.is_telephone_event]
    if not any(_aiortc_supports(c) for c in offered):
        names = ", ".join(f"{c.name}/{c.clock_rate}" for c in offered) or "none"
        ours = ", ".join(f"{c.name}/{c.clock_rate}" for c in AIORTC_AUDIO_CODECS)
        raise SdpError(f"{where} has no codec we support (offered: {names}; supported: {ours})")


def _check_attribute(name: str, value: str, where: str, media: MediaDescription) -> None:
    """Check the attribute syntax that aiortc 1.16 parses without catching errors."""
    problem: str | None = None
    if name == "fingerprint":
        _check_fingerprint(value, where)
    elif name == "setup":
        _check_setup(value, where)
    elif name == "candidate":
        problem = _candidate_problem(value)
    elif name == "extmap":
        parts = value.split()
        ext_id = parts[0].split("/") if parts else []
        if len(parts) != 2 or len(ext_id) > 2 or not is_number(ext_id[0]):
            problem = "a=extmap must be '<id>[/<direction>] <URI>' without extension attributes"
    elif name == "rtcp":
        port, _, address = value.partition(" ")
        if not is_number(port) or (address and not re.fullmatch(r"IN IP[46] [^ ]+", address)):
            problem = "a=rtcp must be '<port> [IN IP4|IP6 <address>]'"
    elif name == "ssrc":
        ssrc, _, description = value.partition(" ")
        if not is_number(ssrc) or ":" not in description:
            problem = "a=ssrc must be '<ssrc> <attribute>:<value>'"
    elif name == "ssrc-group":
        if not all(is_number(p) for p in value.split()[1:]):
            problem = "a=ssrc-group lists a non-numeric SSRC"
    elif name == "rtcp-fb":
        if len(value.split(" ", 2)) < 2:
            problem = "a=rtcp-fb must be '<payload type> <type> [<parameter>]'"
    elif name == "fmtp":
        problem = _fmtp_problem(value, media)
    elif name == "rtpmap":
        try:
            parse_rtpmap(value)
        except ValueError as exc:
            problem = str(exc)
    if problem is not None:
        raise SdpError(f"{where}: {problem}")


def _candidate_problem(value: str) -> str | None:
    """Check an a=candidate value (RFC 8839 section 5.1) as far as aiortc and aioice parse it."""
    parts = value.split()
    if len(parts) < 8 or not all(is_number(p) for p in (parts[1], parts[3], parts[5])):
        return (
            "a=candidate needs foundation, component, transport, priority, address, "
            "port, 'typ' and type"
        )
    if int(parts[5]) > 65535 or int(parts[3]) > 0xFFFFFFFF:
        return "a=candidate port or priority is out of range"
    if not parts[4].lower().endswith(".local"):
        try:
            ipaddress.ip_address(parts[4])
        except ValueError:
            return "a=candidate address is not an IP address or an mDNS .local name"
    for i in range(8, len(parts) - 1):
        if parts[i] == "rport" and not is_number(parts[i + 1]):
            return "a=candidate has a non-numeric rport"
    return None


def _fmtp_problem(value: str, media: MediaDescription) -> str | None:
    if " " not in value:
        return "a=fmtp has no parameters"
    try:
        format_, parameters = split_fmtp(value)
    except ValueError as exc:
        return str(exc)
    mapped = {v.split(" ", 1)[0] for v in media.attribute_values("rtpmap")}
    if format_ not in mapped:
        return f"a=fmtp refers to payload type {format_[:8]}, which has no a=rtpmap"
    for parameter in parameters.split(";"):
        key, equals, number = parameter.partition("=")
        if (
            equals
            and key in _INTEGER_FMTP_PARAMETERS
            and not re.fullmatch(r"[+-]?\d+", number.strip())
        ):
            return f"a=fmtp parameter {key} is not an integer"
    return None


def _check_setup(value: str, where: str) -> None:
    if value not in DTLS_SETUP_VALUES:
        raise SdpError(f"{where}: a=setup must be actpass, active or passive")


def _check_fingerprint(value: str, where: str) -> None:
    if len(value.split()) != 2:
        raise SdpError(f"{where}: a=fingerprint must be '<hash function> <fingerprint>'")


def _check_connection_type(nettype: str, addrtype: str, where: str) -> None:
    if nettype != "IN" or addrtype not in ("IP4", "IP6"):
        raise SdpError(f"{where}: c= must be of network type IN and address type IP4 or IP6")


def _value(offer: SessionDescription, media: MediaDescription, name: str) -> str | None:
    return media.first_value(name) or offer.first_value(name)


def _aiortc_supports(codec: Codec) -> bool:
    return any(
        codec.name.casefold() == c.name.casefold() and codec.clock_rate == c.clock_rate
        for c in AIORTC_AUDIO_CODECS
    )


def _matching_section(
    offer: SessionDescription, answered: MediaDescription, position: int
) -> MediaDescription | None:
    mid = answered.first_value("mid")
    if mid is not None:
        return next((m for m in offer.media if m.first_value("mid") == mid), None)
    if position < len(offer.media) and offer.media[position].media == answered.media:
        return offer.media[position]
    return None


def _append_format(media: MediaDescription, dtmf: Codec) -> MediaDescription:
    """Add `dtmf` to the m= line and its a=rtpmap and a=fmtp after the section's last codec line."""
    assert dtmf.payload_type is not None
    added = [Attribute("rtpmap", dtmf.rtpmap_value(dtmf.payload_type))]
    added.append(Attribute("fmtp", f"{dtmf.payload_type} {dtmf.fmtp or ''}".rstrip()))
    attributes = list(media.attributes)
    codec_lines = [i for i, a in enumerate(attributes) if a.name in ("rtpmap", "fmtp", "rtcp-fb")]
    position = codec_lines[-1] + 1 if codec_lines else len(attributes)
    attributes[position:position] = added
    return replace(
        media, formats=(*media.formats, str(dtmf.payload_type)), attributes=tuple(attributes)
    )
