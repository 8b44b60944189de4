"""Which SDP puts a SIP call on hold for the media timeout."""

from __future__ import annotations

import pytest

from signaling import sdp
from voxgate.calls import _answer_holds, description_holds, sdp_holds
from voxgate.rtp_setup import SUPPORTED_CODECS


def offer(
    session_direction: str = "",
    media_direction: str = "",
    port: int = 4000,
    host: str = "127.0.0.1",
) -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", f"c=IN IP4 {host}", "t=0 0"]
    if session_direction:
        lines.append(f"a={session_direction}")
    lines += [f"m=audio {port} RTP/AVP 0", "a=rtpmap:0 PCMU/8000"]
    if media_direction:
        lines.append(f"a={media_direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.mark.parametrize(
    ("body", "held"),
    [
        (offer(), False),
        (offer(media_direction="sendrecv"), False),
        (offer(media_direction="recvonly"), True),
        (offer(host="0.0.0.0"), True),
        (offer(media_direction="sendonly"), True),
        (offer(media_direction="inactive"), True),
        (offer(session_direction="inactive"), True),
        (offer(session_direction="inactive", media_direction="sendrecv"), False),
        (offer(media_direction="sendonly", port=0), False),
        (b"not sdp", False),
        (None, False),
    ],
)
def test_sdp_holds(body: bytes | None, held: bool) -> None:
    assert sdp_holds(body) is held


@pytest.mark.parametrize(
    ("body", "held"),
    [
        (offer(), False),
        (offer(media_direction="recvonly"), True),
        (offer(host="0.0.0.0"), True),
        (offer(session_direction="inactive", media_direction="sendrecv"), False),
        (offer(media_direction="sendonly", port=0), False),
    ],
)
def test_parsed_sdp_holds_alike(body: bytes, held: bool) -> None:
    assert description_holds(sdp.parse(body)) is held


def two_streams(first: str, second: str) -> bytes:
    """Return an offer of two media sections, each given as its m= line and attribute lines."""
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
    return ("\r\n".join([*lines, first, second]) + "\r\n").encode()


@pytest.mark.parametrize(
    "body",
    [
        offer(),
        offer(media_direction="sendrecv"),
        offer(media_direction="recvonly"),
        offer(host="0.0.0.0"),
        offer(host="0.0.0.0", media_direction="recvonly"),
        offer(media_direction="sendonly"),
        offer(media_direction="inactive"),
        offer(session_direction="inactive"),
        offer(session_direction="sendonly", media_direction="sendrecv"),
        # The first audio stream has no common codec, so the answer takes the second.
        two_streams("m=audio 4000 RTP/AVP 18\r\na=sendonly", "m=audio 4002 RTP/AVP 0"),
        two_streams("m=audio 4000 RTP/AVP 18", "m=audio 4002 RTP/AVP 0\r\na=sendonly"),
        # The first audio stream is not RTP/AVP.
        two_streams("m=audio 4000 UDP/TLS/RTP/SAVPF 0\r\na=inactive", "m=audio 4002 RTP/AVP 0"),
        # A rejected audio stream, or a video stream, comes before the answered one.
        two_streams("m=audio 0 RTP/AVP 0\r\na=sendonly", "m=audio 4002 RTP/AVP 0"),
        two_streams("m=video 4000 RTP/AVP 96\r\na=sendonly", "m=audio 4002 RTP/AVP 0"),
    ],
)
def test_answer_holds_as_offer(body: bytes) -> None:
    parsed = sdp.parse(body)
    answer = sdp.answer_audio(
        parsed,
        SUPPORTED_CODECS,
        local_host="127.0.0.1",
        local_port=5000,
        session_id=1,
        session_version=1,
    )
    assert _answer_holds(answer, parsed) is description_holds(parsed)
