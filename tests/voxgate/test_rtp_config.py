"""RTP session settings built from a negotiated SDP audio stream."""

from __future__ import annotations

import pytest

from media.rtp_session import RtpSessionConfig
from signaling import sdp
from voxgate.rtp_setup import rtp_config


def negotiated(codec: sdp.Codec, dtmf: sdp.Codec | None) -> sdp.NegotiatedAudio:
    return sdp.NegotiatedAudio(
        codec=codec,
        dtmf=dtmf,
        remote_host="127.0.0.1",
        remote_port=4000,
        direction="sendrecv",
        ptime_ms=20,
    )


EVENT_101 = sdp.Codec("telephone-event", 8000, payload_type=101)


def test_config_from_codec_and_dtmf() -> None:
    config = rtp_config(negotiated(sdp.PCMA, EVENT_101))

    assert config == RtpSessionConfig(
        codec_name="PCMA", payload_type=8, telephone_event_payload_type=101
    )


def test_config_without_dtmf() -> None:
    config = rtp_config(negotiated(sdp.PCMU, None))

    assert config == RtpSessionConfig(
        codec_name="PCMU", payload_type=0, telephone_event_payload_type=None
    )


def test_config_keeps_peer_payload_types() -> None:
    dynamic_pcmu = sdp.Codec("PCMU", 8000, payload_type=96)
    event_100 = sdp.Codec("telephone-event", 8000, payload_type=100)

    config = rtp_config(negotiated(dynamic_pcmu, event_100))

    assert config.payload_type == 96
    assert config.telephone_event_payload_type == 100
    assert rtp_config(negotiated(sdp.PCMU, EVENT_101)).payload_type == 0


def test_config_shared_between_equal_streams() -> None:
    first = rtp_config(negotiated(sdp.PCMU, EVENT_101))
    second = rtp_config(negotiated(sdp.PCMU, EVENT_101))

    assert second is first


@pytest.mark.parametrize(
    ("codec", "dtmf"),
    [
        (sdp.Codec("PCMU", 8000), None),
        (sdp.PCMU, sdp.Codec("telephone-event", 8000)),
    ],
)
def test_config_rejects_missing_payload_type(codec: sdp.Codec, dtmf: sdp.Codec | None) -> None:
    with pytest.raises(ValueError, match="has no payload type"):
        rtp_config(negotiated(codec, dtmf))
