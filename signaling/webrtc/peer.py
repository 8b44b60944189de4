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
  `accept_offer` has `signaling.sdp.webrtc` check and cut down the offer and
  complete the answer (with telephone-event when offered), and turns every
  failure into a ProtocolError.
"""

from __future__ import annotations

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
from aiortc.sdp import candidate_from_sdp

from signaling.sdp.codecs import find_telephone_event, offered_codecs
from signaling.sdp.errors import SdpError
from signaling.sdp.model import MediaDescription, SessionDescription
from signaling.sdp.parser import parse as parse_sdp
from signaling.sdp.webrtc import complete_webrtc_answer, prepare_webrtc_offer
from signaling.webrtc.config import WebRtcConfig
from signaling.webrtc.protocol import Candidate, ErrorCode, ProtocolError

logger = logging.getLogger("webrtc")

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


def strip_mdns_candidates(sdp: str) -> str:
    """Remove a=candidate lines whose address is an mDNS `.local` name."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    kept = [
        line for line in lines if not (line.startswith("a=candidate:") and _is_mdns_candidate(line))
    ]
    return "\r\n".join(kept)


def _telephone_events(answer: SessionDescription) -> dict[int, int]:
    for media in answer.media:
        if media.media == "audio" and not media.is_rejected:
            return {
                codec.payload_type: codec.clock_rate
                for codec in offered_codecs(media)
                if codec.is_telephone_event and codec.payload_type is not None
            }
    return {}


def _negotiate_telephone_event(transceiver: RTCRtpTransceiver, offered: MediaDescription) -> None:
    """Add the offered telephone-event (RFC 4733) to aiortc's negotiated codecs.

    aiortc writes `transceiver._codecs` into the answer and registers their
    payload types with its RTP router, which drops packets of any other
    type. The sender encodes with the first codec only, so appending keeps
    the audio codec in front. The event codec must run at the clock rate of
    the first (sending) codec, which is the one a browser's RTCDTMFSender uses.
    """
    negotiated: list[RTCRtpCodecParameters] = transceiver._codecs
    if not negotiated:
        return
    dtmf = find_telephone_event(offered_codecs(offered), negotiated[0].clockRate)
    if dtmf is None or dtmf.payload_type is None:
        return
    negotiated.append(
        RTCRtpCodecParameters(
            mimeType="audio/telephone-event",
            clockRate=dtmf.clock_rate,
            channels=1,
            payloadType=dtmf.payload_type,
            parameters={dtmf.fmtp: None} if dtmf.fmtp else {},
        )
    )


async def accept_offer(
    pc: RTCPeerConnection,
    sdp: str,
    track: MediaStreamTrack,
    config: WebRtcConfig,
    *,
    call_id: str | None = None,
) -> AcceptedOffer:
    """Apply a browser's offer, attach `track` for sending and return the answer.

    `signaling.sdp.webrtc` checks the offer and cuts it down to its audio
    section before aiortc sees it, and completes aiortc's answer (declined
    sections, telephone-event). `.local` candidates are dropped first unless
    `allow_mdns`. Every failure becomes a ProtocolError with code bad_sdp; the
    caller should then close the peer connection.
    """
    text = sdp if config.allow_mdns else strip_mdns_candidates(sdp)
    try:
        offer = parse_sdp(text)
        prepared = prepare_webrtc_offer(offer)
    except SdpError as exc:
        raise _fail(str(exc)[:300], call_id) from None
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=prepared.sdp, type="offer"))
        transceiver = next(t for t in pc.getTransceivers() if t.kind == "audio")
        pc.addTrack(track)
        _negotiate_telephone_event(transceiver, offer.media[prepared.audio_index])
        await pc.setLocalDescription(await pc.createAnswer())
        answer_sdp = complete_webrtc_answer(pc.localDescription.sdp, offer)
        events = _telephone_events(parse_sdp(answer_sdp))
    except Exception as exc:
        logger.debug("offer rejected by aiortc call_id=%s: %s", call_id, type(exc).__name__)
        raise _fail(f"offer rejected: {type(exc).__name__}: {exc}"[:300], call_id) from None
    return AcceptedOffer(sdp=answer_sdp, telephone_events=events, transceiver=transceiver)


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
