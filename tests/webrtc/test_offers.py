"""Offer handling in front of aiortc: field cases, telephone-event, mDNS.

The field offers carry documentation addresses (192.0.2.x) in their
candidates; the tests drop those lines so that aiortc never sends a
connectivity check off the machine. Everything else is used as captured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.webrtc.config import WebRtcConfig
from signaling.webrtc.peer import accept_offer, create_peer, strip_mdns_candidates
from signaling.webrtc.protocol import ErrorCode, ProtocolError

DATA = Path(__file__).parent.parent / "data" / "webrtc"
CONFIG = WebRtcConfig(
    allowed_origins=["http://127.0.0.1"],
    token_secret=b"k" * 32,
    advertised_addresses=["127.0.0.1"],
)


def _field_offer(name: str) -> str:
    lines = (DATA / name).read_text().splitlines()
    return "\r\n".join(line for line in lines if not line.startswith("a=candidate:")) + "\r\n"


def _chromium_offer() -> str:
    """The captured Chromium offer with its CRLF line ends kept."""
    return (DATA / "chromium156-offer.sdp").read_bytes().decode()


@pytest.fixture
async def pc() -> AsyncIterator[RTCPeerConnection]:
    peer = create_peer(CONFIG)
    yield peer
    await peer.close()


async def _browser_like_offer(extra_audio_lines: list[str], formats: str) -> str:
    """An aiortc offer reshaped like Chromium's: extra payload types and attributes."""
    client = create_peer(CONFIG)
    client.addTransceiver("audio", direction="sendrecv")
    await client.setLocalDescription(await client.createOffer())
    sdp = client.localDescription.sdp
    await client.close()
    lines = sdp.splitlines()
    out = []
    for line in lines:
        if line.startswith("m=audio "):
            head = " ".join(line.split()[:3])
            line = f"{head} {formats}"
        out.append(line)
        if line.startswith("a=rtcp-mux"):
            out.extend(extra_audio_lines)
    return "\r\n".join(out) + "\r\n"


async def test_static_payload_types_without_rtpmap_kept(pc: RTCPeerConnection) -> None:
    offer = _field_offer("20-alexa-webrtc-offer-static-pt-without-rtpmap.sdp")
    accepted = await accept_offer(pc, offer, AudioStreamTrack(), CONFIG)
    media_lines = [line for line in accepted.sdp.splitlines() if line.startswith("m=")]
    assert media_lines[0].split()[3:] == ["96", "0", "8"]
    assert "a=rtpmap:0 PCMU/8000" in accepted.sdp
    assert "a=rtpmap:8 PCMA/8000" in accepted.sdp


async def test_unsupported_video_line_declined_in_place(pc: RTCPeerConnection) -> None:
    offer = _field_offer("20-alexa-webrtc-offer-static-pt-without-rtpmap.sdp")
    accepted = await accept_offer(pc, offer, AudioStreamTrack(), CONFIG)
    media_lines = [line for line in accepted.sdp.splitlines() if line.startswith("m=")]
    assert len(media_lines) == 2
    assert media_lines[1].startswith("m=video 0 ")
    assert "a=mid:video0" in accepted.sdp


async def test_datachannel_only_offer_rejected_cleanly(pc: RTCPeerConnection) -> None:
    offer = _field_offer("23-safari-offer-datachannel-only-no-audio.sdp")
    with pytest.raises(ProtocolError) as info:
        await accept_offer(pc, offer, AudioStreamTrack(), CONFIG, call_id="c-23")
    assert info.value.code is ErrorCode.BAD_SDP
    assert "no audio stream" in info.value.message
    assert info.value.call_id == "c-23"


async def test_offer_without_rtcp_mux_rejected_cleanly(pc: RTCPeerConnection) -> None:
    offer = _field_offer("25-asterisk13-webrtc-offer-without-rtcp-mux.sdp")
    with pytest.raises(ProtocolError) as info:
        await accept_offer(pc, offer, AudioStreamTrack(), CONFIG)
    assert info.value.code is ErrorCode.BAD_SDP
    assert "rtcp-mux" in info.value.message


@pytest.mark.parametrize(
    "sdp",
    ["", "   \r\n", "x=1", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF\r\na=rtcp-mux\r\n"],
    ids=["empty", "blank", "garbage", "audio-without-formats"],
)
async def test_unusable_offer_rejected_cleanly(pc: RTCPeerConnection, sdp: str) -> None:
    with pytest.raises(ProtocolError) as info:
        await accept_offer(pc, sdp, AudioStreamTrack(), CONFIG)
    assert info.value.code is ErrorCode.BAD_SDP


async def test_aiortc_exception_becomes_protocol_error(
    pc: RTCPeerConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(description: object) -> None:
        raise AssertionError

    monkeypatch.setattr(pc, "setRemoteDescription", fail)
    offer = _chromium_offer()
    with pytest.raises(ProtocolError) as info:
        await accept_offer(pc, offer, AudioStreamTrack(), CONFIG, call_id="c-9")
    assert info.value.code is ErrorCode.BAD_SDP
    assert "offer rejected: AssertionError" in info.value.message
    assert info.value.call_id == "c-9"


async def test_telephone_event_added_to_answer(pc: RTCPeerConnection) -> None:
    offer = await _browser_like_offer(
        [
            "a=rtpmap:110 telephone-event/48000",
            "a=rtpmap:126 telephone-event/8000",
        ],
        "96 0 8 110 126",
    )
    accepted = await accept_offer(pc, offer, AudioStreamTrack(), CONFIG)
    assert accepted.telephone_events == {110: 48000}
    assert "a=rtpmap:110 telephone-event/48000" in accepted.sdp
    assert "a=rtpmap:126 telephone-event/8000" not in accepted.sdp
    audio_line = next(line for line in accepted.sdp.splitlines() if line.startswith("m=audio"))
    assert audio_line.split()[3] == "96"


async def test_telephone_event_at_unused_rate_not_answered(pc: RTCPeerConnection) -> None:
    offer = await _browser_like_offer(["a=rtpmap:101 telephone-event/32000"], "96 101")
    accepted = await accept_offer(pc, offer, AudioStreamTrack(), CONFIG)
    assert accepted.telephone_events == {}
    assert "telephone-event" not in accepted.sdp


def test_mdns_candidates_stripped() -> None:
    offer = _chromium_offer().replace(
        "a=rtcp-mux\r\n",
        "a=rtcp-mux\r\n"
        "a=candidate:1 1 udp 2113937151 4e1b2c3d-0001.local 58470 typ host\r\n"
        "a=candidate:2 1 udp 2113937150 127.0.0.1 58471 typ host\r\n",
    )
    stripped = strip_mdns_candidates(offer)
    assert ".local" in offer
    assert ".local" not in stripped
    assert "127.0.0.1 58471" in stripped
    assert stripped.count("\r\n") == offer.count("\r\n") - 1


async def test_mdns_candidate_never_reaches_aiortc(
    pc: RTCPeerConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    async def capture(description: RTCSessionDescription) -> None:
        # Stop here so that aiortc never tries to resolve the name by multicast.
        seen.append(description.sdp)
        raise AssertionError

    monkeypatch.setattr(pc, "setRemoteDescription", capture)
    offer = _chromium_offer().replace(
        "a=rtcp-mux\r\n",
        "a=rtcp-mux\r\na=candidate:1 1 udp 2113937151 4e1b2c3d-0001.local 9 typ host\r\n",
    )
    assert ".local" in offer
    with pytest.raises(ProtocolError):
        await accept_offer(pc, offer, AudioStreamTrack(), CONFIG)
    assert len(seen) == 1
    assert ".local" not in seen[0]


async def test_chromium_offer_answered_with_opus_and_dtmf(pc: RTCPeerConnection) -> None:
    offer = _chromium_offer()
    accepted = await accept_offer(pc, offer, AudioStreamTrack(), CONFIG)
    audio_line = next(line for line in accepted.sdp.splitlines() if line.startswith("m=audio"))
    formats = audio_line.split()[3:]
    assert formats[0] == "111"
    assert "110" in formats
    assert "13" not in formats
    assert accepted.telephone_events == {110: 48000}
    assert "a=candidate:" in accepted.sdp
    assert " 127.0.0.1 " in accepted.sdp


_offer_lines = _chromium_offer().rstrip("\r\n").split("\r\n")
_mutations = st.lists(
    st.tuples(
        st.sampled_from(["drop", "duplicate", "garble", "truncate"]),
        st.integers(min_value=0, max_value=len(_offer_lines) - 1),
        st.text(max_size=30),
    ),
    min_size=1,
    max_size=4,
)


def _mutate(changes: list[tuple[str, int, str]]) -> str:
    lines = list(_offer_lines)
    for action, index, text in changes:
        index %= len(lines)
        if action == "drop" and len(lines) > 1:
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "garble":
            head, _, _ = lines[index].partition(":")
            lines[index] = f"{head}:{text}" if ":" in lines[index] else f"{lines[index][:2]}{text}"
        elif action == "truncate":
            lines[index] = lines[index][: len(text)]
    return "\r\n".join(lines) + "\r\n"


@settings(max_examples=150, deadline=None)
@given(_mutations)
async def test_fuzz_mutated_offer_answered_or_bad_sdp(changes: list[tuple[str, int, str]]) -> None:
    """A damaged Chromium offer gets an answer or a bad_sdp error, never another exception.

    The captured offer has no candidates, so aiortc only binds on 127.0.0.1.
    """
    offer = _mutate(changes)
    if "a=candidate" in offer:
        return
    peer = create_peer(CONFIG)
    try:
        accepted = await accept_offer(peer, offer, AudioStreamTrack(), CONFIG)
        assert "m=audio" in accepted.sdp
    except ProtocolError as error:
        assert error.code is ErrorCode.BAD_SDP
    finally:
        await peer.close()
