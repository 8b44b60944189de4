"""aiortc peer connections for browser legs, configured from `WebRtcConfig` only.

aiortc 1.16 and aioice 0.13 need four corrections here, all made in this module:

- aiortc contacts a public STUN server unless `iceServers` is given, so the
  list always comes from the config (empty by default).
- aioice has no setting for its host addresses and leaves 127.0.0.1 out;
  `install_host_addresses` replaces `aioice.ice.get_host_addresses` once.
- aiortc resolves `.local` (mDNS) candidates; they are dropped unless
  `allow_mdns` is set.
- aiortc never negotiates telephone-event and raises assorted exceptions
  (ValueError, AssertionError, OperationError, struct.error) on bad offers.
  `accept_offer` checks the offer first, adds telephone-event to the answer
  when offered, and turns every failure into a ProtocolError.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import SessionDescription, candidate_from_sdp

from signaling.webrtc.config import WebRtcConfig
from signaling.webrtc.protocol import Candidate, ErrorCode, ProtocolError

logger = logging.getLogger("webrtc")

# RFC 3551 section 6: static audio payload types that need no a=rtpmap line.
_STATIC_AUDIO_RTPMAP = {0: "PCMU/8000", 8: "PCMA/8000", 9: "G722/8000"}

_host_lock = threading.Lock()
_original_get_host_addresses = aioice.ice.get_host_addresses


def install_host_addresses(addresses: Sequence[str]) -> None:
    """Make aioice gather host candidates on exactly `addresses`.

    aioice calls the module function `get_host_addresses` while gathering, so
    this replaces it for the whole process. An empty list restores the aioice
    default (every interface address except loopback).
    NOTE: aioice binds a socket to each address as well as advertising it, so
    the addresses must be local. A 1:1 NAT mapping needs a TURN or STUN server.
    """
    for address in addresses:
        ipaddress.ip_address(address)
    chosen = tuple(addresses)

    def configured(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        result = []
        for address in chosen:
            version = ipaddress.ip_address(address).version
            if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
                result.append(address)
        return result

    with _host_lock:
        if chosen:
            aioice.ice.get_host_addresses = configured
        else:
            aioice.ice.get_host_addresses = _original_get_host_addresses


def create_peer(config: WebRtcConfig) -> RTCPeerConnection:
    """Create a peer connection whose ICE servers come from the config only."""
    install_host_addresses(config.advertised_addresses)
    servers = [
        RTCIceServer(urls=server.urls, username=server.username, credential=server.credential)
        for server in config.ice_servers
    ]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


@dataclass(frozen=True, slots=True)
class AcceptedOffer:
    """The SDP answer and the negotiated telephone-event payload types and clock rates."""

    sdp: str
    telephone_events: dict[int, int]
    transceiver: RTCRtpTransceiver


def _fail(message: str, call_id: str | None) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_SDP, message, field="sdp", call_id=call_id)


def _is_mdns_candidate(line: str) -> bool:
    parts = line.split()
    return len(parts) >= 5 and parts[4].lower().endswith(".local")


@dataclass(frozen=True, slots=True)
class DeclinedSection:
    """An offered m-line that the answer declines with port 0 (RFC 3264 section 6)."""

    index: int
    media_line: str
    mid: str | None


@dataclass(frozen=True, slots=True)
class NormalizedOffer:
    sdp: str
    declined: tuple[DeclinedSection, ...]


def normalize_offer(sdp: str, *, allow_mdns: bool, call_id: str | None = None) -> NormalizedOffer:
    """Check an offer for what aiortc needs and rewrite what it misreads.

    Raises ProtocolError for an offer without a usable audio m-line or without
    rtcp-mux on it. Keeps the first usable audio m-line and takes every other
    m-line out (the answer declines them), adds the a=rtpmap lines that
    RFC 3551 makes optional for static payload types 0, 8 and 9 (aiortc drops
    those types otherwise), and drops `.local` candidates unless `allow_mdns`.
    """
    text = sdp.replace("\r\n", "\n").strip()
    if not text:
        raise _fail("offer is empty", call_id)
    if not text.startswith("v=0"):
        raise _fail("offer does not start with v=0", call_id)
    sections: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    media = sections[1:]
    usable = [
        s
        for s in media
        if s[0].startswith("m=audio ") and len(s[0].split()) > 3 and s[0].split()[1] != "0"
    ]
    if not usable:
        if any(s[0].startswith("m=audio ") for s in media):
            raise _fail(
                "offer's audio m-line is disabled (port 0) or has no payload types", call_id
            )
        raise _fail("offer has no audio m-line", call_id)
    audio = usable[0]
    if "a=rtcp-mux" not in audio:
        raise _fail("offer's audio m-line lacks a=rtcp-mux, which WebRTC requires", call_id)
    declined = tuple(
        DeclinedSection(index=i, media_line=s[0], mid=_mid(s))
        for i, s in enumerate(media)
        if s is not audio
    )
    audio_mid = _mid(audio)
    session: list[str] = []
    for line in sections[0]:
        if line.startswith("a=group:BUNDLE"):
            if audio_mid is None or audio_mid not in line.split()[1:]:
                continue
            line = f"a=group:BUNDLE {audio_mid}"
        session.append(line)
    kept = [
        line
        for line in _add_static_rtpmaps(audio)
        if allow_mdns or not (line.startswith("a=candidate:") and _is_mdns_candidate(line))
    ]
    return NormalizedOffer(sdp="\r\n".join(session + kept) + "\r\n", declined=declined)


def _mid(section: list[str]) -> str | None:
    for line in section:
        if line.startswith("a=mid:"):
            return line[len("a=mid:") :].strip()
    return None


def _splice_declined(answer: str, declined: tuple[DeclinedSection, ...]) -> str:
    """Put a port-0 m-line for each declined offer section back at its index."""
    if not declined:
        return answer
    sections: list[list[str]] = [[]]
    for line in answer.replace("\r\n", "\n").strip().split("\n"):
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    media = sections[1:]
    for section in sorted(declined, key=lambda d: d.index):
        parts = section.media_line.split()
        formats = parts[3:4] or ["0"]
        rejected = [" ".join([parts[0], "0", parts[2], *formats])]
        if section.mid is not None:
            rejected.append(f"a=mid:{section.mid}")
        media.insert(min(section.index, len(media)), rejected)
    return "\r\n".join(line for s in [sections[0], *media] for line in s) + "\r\n"


def _add_static_rtpmaps(section: list[str]) -> list[str]:
    formats = section[0].split()[3:]
    mapped = {line.split()[0].split(":", 1)[1] for line in section if line.startswith("a=rtpmap:")}
    extra = [
        f"a=rtpmap:{pt} {_STATIC_AUDIO_RTPMAP[int(pt)]}"
        for pt in formats
        if pt.isdigit() and int(pt) in _STATIC_AUDIO_RTPMAP and pt not in mapped
    ]
    return [*section, *extra]


def _offered_telephone_events(sdp: str) -> list[RTCRtpCodecParameters]:
    description = SessionDescription.parse(sdp)
    for media in description.media:
        if media.kind == "audio":
            return [
                codec
                for codec in media.rtp.codecs
                if codec.mimeType.lower() == "audio/telephone-event"
            ]
    return []


async def accept_offer(
    pc: RTCPeerConnection,
    sdp: str,
    track: MediaStreamTrack,
    config: WebRtcConfig,
    *,
    call_id: str | None = None,
) -> AcceptedOffer:
    """Apply a browser's offer, attach `track` for sending and return the answer.

    Every failure becomes a ProtocolError with code bad_sdp; the peer
    connection should then be closed by the caller.
    """
    offer = normalize_offer(sdp, allow_mdns=config.allow_mdns, call_id=call_id)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        transceiver = next(t for t in pc.getTransceivers() if t.kind == "audio")
        pc.addTrack(track)
        events = _negotiate_telephone_event(transceiver, offer.sdp)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
    except ProtocolError:
        raise
    except Exception as exc:
        logger.debug("offer rejected by aiortc call_id=%s: %s", call_id, type(exc).__name__)
        raise _fail(f"offer rejected: {type(exc).__name__}: {exc}"[:300], call_id) from None
    answer_sdp = _splice_declined(pc.localDescription.sdp, offer.declined)
    return AcceptedOffer(sdp=answer_sdp, telephone_events=events, transceiver=transceiver)


def _negotiate_telephone_event(transceiver: RTCRtpTransceiver, offer: str) -> dict[int, int]:
    """Append the offered telephone-event codecs (RFC 4733) that match a negotiated rate.

    aiortc copies `transceiver._codecs` into the answer and into the receive
    parameters; the sender encodes with the first codec only, so appending
    keeps the audio codec in front.
    """
    negotiated: list[RTCRtpCodecParameters] = transceiver._codecs
    rates = {codec.clockRate for codec in negotiated}
    events: dict[int, int] = {}
    for codec in _offered_telephone_events(offer):
        if codec.clockRate in rates and codec.payloadType is not None:
            negotiated.append(copy.deepcopy(codec))
            events[codec.payloadType] = codec.clockRate
    return events


_CANDIDATE_PREFIX = re.compile(r"^(a=)?candidate:")


async def add_remote_candidate(
    pc: RTCPeerConnection, message: Candidate, *, allow_mdns: bool
) -> bool:
    """Pass a trickled candidate to aiortc; False when it was skipped (mDNS).

    Raises ProtocolError for a candidate that aiortc cannot parse.
    """
    try:
        if message.candidate is None:
            await pc.addIceCandidate(None)
            return True
        text = _CANDIDATE_PREFIX.sub("", message.candidate.strip())
        if not allow_mdns and _is_mdns_candidate("candidate:" + text):
            return False
        candidate = candidate_from_sdp(text)
        candidate.sdpMid = message.sdp_mid
        candidate.sdpMLineIndex = message.sdp_mline_index
        await pc.addIceCandidate(candidate)
    except Exception as exc:
        logger.debug("candidate rejected call_id=%s: %s", message.call_id, type(exc).__name__)
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            "invalid ICE candidate",
            field="candidate",
            call_id=message.call_id,
        ) from None
    return True
