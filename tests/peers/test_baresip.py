"""Tests of the baresip wrapper against SIPp callees on loopback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.peers.conftest import echo_callee, require_binary
from tests.support.audio_analysis import (
    audio_from_rtp,
    dbfs,
    describe_spans,
    digits_from_events,
    duration_matches,
    packets_from_datagrams,
    telephone_events,
    voiced_spans,
)
from tests.support.baresip import BaresipClient, BaresipError, decode_netstrings, encode_netstring
from tests.support.calls import CallEndedBy
from tests.support.capture import LoopbackCapture
from tests.support.waiting import wait_until
from tests.support.wav import read_wav, silence, tone, write_wav

pytestmark = pytest.mark.peer

TONE_S = 1.0


@pytest.fixture(autouse=True)
def _peers_installed() -> None:
    require_binary("baresip")
    require_binary("sipp")


@pytest.fixture
def microphone(tmp_path: Path) -> Path:
    """A 16 kHz WAV: 0.2 s silence, a 1 s tone, then silence (resampled to 8 kHz by the client)."""
    samples = np.concatenate(
        [silence(0.2, 16_000), tone(440, TONE_S, 16_000, 0.5), silence(0.3, 16_000)]
    )
    return write_wav(tmp_path / "microphone.wav", samples, 16_000)


def test_netstrings_round_trip_and_split_reads() -> None:
    buffer = bytearray(encode_netstring(b'{"a":1}') + encode_netstring(b"xy")[:3])
    assert decode_netstrings(buffer) == [b'{"a":1}']
    buffer += encode_netstring(b"xy")[3:]
    assert decode_netstrings(buffer) == [b"xy"]
    assert buffer == b""


def test_netstrings_reject_missing_comma() -> None:
    with pytest.raises(ValueError, match="comma"):
        decode_netstrings(bytearray(b"2:abX"))


def test_microphone_echo_comes_back(tmp_path: Path, microphone: Path, needs_capture: None) -> None:
    """Check that the tone baresip sends comes back from the echoing callee unchanged.

    The echo is compared with what baresip put on the wire, not with the microphone file.
    NOTE: once in CI, baresip 1.0.0 sent 0.64 s of the 1 s tone while the machine was
    loaded. Frames dropped in its transmit path are the likely cause (not confirmed).
    """
    callee = echo_callee(tmp_path)
    with callee, BaresipClient(tmp_path, microphone=microphone, max_call_s=20) as phone:
        callee.wait_until_listening()
        phone.dial(f"sip:echo@127.0.0.1:{callee.sip_port}")
        phone.wait_established(10)

        def echoed_tone_ended() -> bool:
            spans = voiced_spans(phone.received_audio().samples)
            return bool(spans) and phone.received_audio().duration_s > spans[0].end_s + 0.3

        wait_until(echoed_tone_ended, 15, "the echoed tone")
        phone.hangup()
        end = phone.wait_closed(10)
        callee_result = callee.wait(10)

    assert end.ended_by is CallEndedBy.LOCAL
    assert end.reason == "Connection reset by user"
    assert callee_result.passed, callee_result.describe()
    sent = voiced_spans(audio_from_rtp(phone.sent_packets()).samples)
    echoed = voiced_spans(phone.received_audio().samples)
    assert len(sent) == 1, describe_spans(sent)
    assert sent[0].duration_s <= TONE_S + 0.1, describe_spans(sent)
    assert len(echoed) == 1, describe_spans(echoed)
    assert duration_matches(echoed[0], sent[0].duration_s, 0.06), (
        f"sent {describe_spans(sent)}, echoed {describe_spans(echoed)}"
    )
    decoded, rate = read_wav(phone.received_wav())
    assert rate == 8000
    assert dbfs(float(np.sqrt(np.mean(decoded.astype(np.float64) ** 2)))) > -20
    encoder_input, _ = read_wav(phone.sent_wav())
    encoded = voiced_spans(encoder_input, 8000)
    assert len(encoded) == 1, describe_spans(encoded)
    assert duration_matches(encoded[0], sent[0].duration_s, 0.06), (
        f"encoder input {describe_spans(encoded)}, sent {describe_spans(sent)}"
    )


def test_digits_go_out_as_rfc4733_events(tmp_path: Path, needs_capture: None) -> None:
    callee = echo_callee(tmp_path)
    with callee, BaresipClient(tmp_path, max_call_s=20) as phone:
        callee.wait_until_listening()
        with LoopbackCapture(callee.media_port) as capture:
            phone.dial(f"sip:echo@127.0.0.1:{callee.sip_port}")
            sent = phone.send_digits("1#", after_answer_s=0.5)

            def end_packets() -> int:
                events = telephone_events(packets_from_datagrams(capture.received()))
                return sum(event.end for event in events)

            wait_until(lambda: end_packets() >= 6, 10, "the end packets of two digits")
            wait_until(lambda: len(phone.received_digits()) == 2, 10, "two echoed digits")
        phone.hangup()
        phone.wait_closed(10)
        callee.wait(10)

    events = telephone_events(packets_from_datagrams(capture.received()))
    assert digits_from_events(events) == "1#"
    assert sum(event.end for event in events) == 6
    assert sum(event.marker for event in events) == 2
    assert len(sent) == 2
    assert phone.received_digits() == "1#"


def test_callee_hangup_is_reported_as_remote(tmp_path: Path) -> None:
    callee = echo_callee(tmp_path, "uas_echo_hangup.xml", HANGUP_AFTER_MS=800)
    with callee, BaresipClient(tmp_path, max_call_s=20, capture_rtp=False) as phone:
        callee.wait_until_listening()
        phone.dial(f"sip:echo@127.0.0.1:{callee.sip_port}")
        established = phone.wait_established(10)
        end = phone.wait_closed(15)
        callee_result = callee.wait(10)

    assert end.ended_by is CallEndedBy.REMOTE
    assert end.reason == "Connection reset by peer"
    assert end.at > established
    assert callee_result.passed, callee_result.describe()


def test_rejected_call_is_reported_as_failed(tmp_path: Path) -> None:
    callee = echo_callee(tmp_path, "uas_reject.xml")
    with callee, BaresipClient(tmp_path, capture_rtp=False) as phone:
        callee.wait_until_listening()
        phone.dial(f"sip:busy@127.0.0.1:{callee.sip_port}")
        with pytest.raises(BaresipError, match="486 Busy Here"):
            phone.wait_established(10)
        end = phone.wait_closed(10)

    assert end.ended_by is CallEndedBy.FAILED
    assert end.reason == "486 Busy Here"


def test_digits_after_close_raise(tmp_path: Path) -> None:
    callee = echo_callee(tmp_path, "uas_echo_hangup.xml", HANGUP_AFTER_MS=300)
    with callee, BaresipClient(tmp_path, capture_rtp=False) as phone:
        callee.wait_until_listening()
        phone.dial(f"sip:echo@127.0.0.1:{callee.sip_port}")
        with pytest.raises(BaresipError, match="call closed before the digits were sent"):
            phone.send_digits("5", after_answer_s=5.0)


def test_call_ends_when_microphone_runs_out(tmp_path: Path) -> None:
    callee = echo_callee(tmp_path)
    with callee, BaresipClient(tmp_path, max_call_s=1.0, capture_rtp=False) as phone:
        callee.wait_until_listening()
        phone.dial(f"sip:echo@127.0.0.1:{callee.sip_port}")
        established = phone.wait_established(10)
        end = phone.wait_closed(15)
        callee_result = callee.wait(10)

    assert end.ended_by is CallEndedBy.LOCAL
    assert end.reason == "end of file"
    assert end.at > established
    assert callee_result.passed, callee_result.describe()
