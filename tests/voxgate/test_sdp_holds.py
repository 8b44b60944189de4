"""Which SDP puts a SIP call on hold for the media timeout."""

from __future__ import annotations

import pytest

from signaling import sdp
from voxgate.calls import description_holds, sdp_holds


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
