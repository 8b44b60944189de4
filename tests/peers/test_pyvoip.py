"""Tests of the pyVoIP wrapper against SIPp callees on loopback."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.peers.conftest import echo_callee, require_binary
from tests.support.audio_analysis import (
    audio_from_rtp,
    describe_spans,
    digits_from_events,
    duration_matches,
    packets_from_datagrams,
    telephone_events,
    voiced_spans,
)
from tests.support.calls import CallEndedBy
from tests.support.capture import LoopbackCapture
from tests.support.dtmf import detect_digit
from tests.support.pyvoip_client import PyVoipClient, PyVoipError, to_pyvoip_audio
from tests.support.sipp import SCENARIO_DIR, SippProcess, audio_actions
from tests.support.waiting import wait_until
from tests.support.wav import tone, write_wav

pytestmark = pytest.mark.peer


@pytest.fixture(autouse=True)
def _sipp_installed() -> None:
    require_binary("sipp")


def registrar_callee(
    work_dir: Path, template: str = "uas_echo.xml", **values: object
) -> SippProcess:
    """An echoing SIPp callee that also accepts REGISTER, so it runs until stopped."""
    return echo_callee(work_dir, template, calls=None, **values)


def test_audio_conversion_to_unsigned_8_bit() -> None:
    samples = np.array([-32768, -256, 0, 255, 256, 32767], dtype=np.int16)
    assert to_pyvoip_audio(samples) == bytes([0, 127, 128, 128, 129, 255])


def test_registers_calls_and_hears_echo(tmp_path: Path) -> None:
    microphone = write_wav(tmp_path / "tone.wav", tone(440, 1.0, 16_000, 0.5), 16_000)
    callee = registrar_callee(tmp_path)
    with callee:
        callee.wait_until_listening()
        with PyVoipClient(callee.sip_port) as phone:
            phone.dial("echo")
            phone.wait_established(10)
            phone.play_wav(microphone)

            def echoed_tone_ended() -> bool:
                audio = phone.received_audio()
                spans = voiced_spans(audio.samples)
                return bool(spans) and audio.duration_s > spans[0].end_s + 0.3

            wait_until(echoed_tone_ended, 15, "the echoed tone")
            phone.hangup()
            end = phone.wait_closed(5)
        callee_result = callee.stop()

    assert end.ended_by is CallEndedBy.LOCAL
    spans = voiced_spans(phone.received_audio().samples)
    assert len(spans) == 1, describe_spans(spans)
    assert duration_matches(spans[0], 1.0, 0.1), describe_spans(spans)
    assert phone.rtp_errors == []
    assert "Aborting call" not in callee_result.error_log, callee_result.describe()
    assert "REGISTER" in callee_result.message_log
    assert "BYE sip:echo@" in callee_result.message_log


def test_rfc4733_digits_share_the_audio_stream(tmp_path: Path, needs_capture: None) -> None:
    callee = registrar_callee(tmp_path)
    with callee:
        callee.wait_until_listening()
        with PyVoipClient(callee.sip_port) as phone, LoopbackCapture(callee.media_port) as capture:
            phone.dial("echo")
            phone.send_digits_rfc4733("12", after_answer_s=0.3)

            def end_packets() -> int:
                events = telephone_events(packets_from_datagrams(capture.snapshot()))
                return sum(event.end for event in events)

            wait_until(lambda: end_packets() >= 6, 10, "the end packets of two digits")
            wait_until(lambda: len(phone.received_digits()) >= 2, 10, "two echoed digits")
            phone.hangup()
        callee.stop()

    sent = [p for p in packets_from_datagrams(capture.snapshot()) if p.payload_type in (0, 101)]
    events = telephone_events(sent)
    assert digits_from_events(events) == "12"
    assert sum(event.marker for event in events) == 2
    assert len({event.timestamp for event in events}) == 2
    assert len({packet.ssrc for packet in sent}) == 1
    sequences = sorted(packet.sequence for packet in sent)
    assert sequences == list(range(sequences[0], sequences[0] + len(sent)))
    assert phone.received_digits() == "12"
    assert phone.rtp_errors == []


def test_inband_digits_are_detectable(tmp_path: Path, needs_capture: None) -> None:
    callee = registrar_callee(tmp_path)
    with callee:
        callee.wait_until_listening()
        with PyVoipClient(callee.sip_port) as phone, LoopbackCapture(callee.media_port) as capture:
            phone.dial("echo")
            phone.send_digits_inband("4#", after_answer_s=0.3, tone_s=0.1, gap_s=0.3)

            def tones_sent() -> int:
                """Count the tones on the wire that are followed by 0.1 s of audio."""
                audio = audio_from_rtp(packets_from_datagrams(capture.snapshot()))
                spans = voiced_spans(audio.samples, bridge_gap_s=0.05, min_span_s=0.04)
                return sum(span.end_s + 0.1 < audio.duration_s for span in spans)

            wait_until(lambda: tones_sent() >= 2, 10, "two DTMF tones on the wire")
            phone.hangup()
        callee.stop()

    samples = audio_from_rtp(packets_from_datagrams(capture.snapshot())).samples
    spans = voiced_spans(samples, bridge_gap_s=0.05, min_span_s=0.04)
    assert len(spans) == 2, describe_spans(spans)
    digits = [
        detect_digit(samples[round(span.start_s * 8000) : round(span.end_s * 8000)])
        for span in spans
    ]
    assert digits == ["4", "#"]
    assert all(duration_matches(span, 0.1, 0.04) for span in spans), describe_spans(spans)


def test_callee_hangup_is_reported_as_remote(tmp_path: Path) -> None:
    callee = registrar_callee(tmp_path, "uas_echo_hangup.xml", HANGUP_AFTER_MS=800)
    with callee:
        callee.wait_until_listening()
        with PyVoipClient(callee.sip_port) as phone:
            phone.dial("echo")
            established = phone.wait_established(10)
            end = phone.wait_closed(15)
        callee_result = callee.stop()

    assert end.ended_by is CallEndedBy.REMOTE
    assert end.reason == "BYE received"
    assert end.at > established
    assert "Aborting call" not in callee_result.error_log, callee_result.describe()


def test_rejection_without_provisional_times_out(tmp_path: Path) -> None:
    # pyVoIP's call() waits for a 100, 180 or 401 and reads past a 486.
    callee = SippProcess(SCENARIO_DIR / "uas_reject.xml", tmp_path, calls=None)
    with callee:
        callee.wait_until_listening()
        with (
            PyVoipClient(callee.sip_port) as phone,
            pytest.raises(PyVoipError, match="no provisional response"),
        ):
            phone.dial("busy", timeout_s=2.0)
        # SIPp keeps running with the aborted call, so do not wait long for it.
        callee_result = callee.stop(timeout_s=1.0)

    assert "486 Busy Here" in callee_result.message_log


def test_receive_thread_survives_event_above_15(tmp_path: Path) -> None:
    callee = registrar_callee(tmp_path)
    with callee:
        callee.wait_until_listening()
        with (
            PyVoipClient(callee.sip_port) as phone,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as injector,
        ):
            phone.dial("echo")
            phone.wait_established(10)
            # Event 16 (hook flash) with the marker bit: pyVoIP's own parser
            # raises IndexError for it.
            flash = struct.pack("!BBHII", 0x80, 0x80 | 101, 1, 1, 99) + bytes([16, 10, 0, 160])
            injector.sendto(flash, ("127.0.0.1", phone.rtp_port))
            wait_until(lambda: phone.rtp_errors, 5, "the parse error of event 16")
            phone.play(tone(440, 0.5, 8000, 0.5))
            wait_until(
                lambda: voiced_spans(phone.received_audio().samples), 10, "echo after the error"
            )
            phone.hangup()
        callee.stop()

    assert len(phone.rtp_errors) == 1
    assert "IndexError" in phone.rtp_errors[0]


def test_calls_without_registering(tmp_path: Path) -> None:
    callee = registrar_callee(tmp_path)
    with callee:
        callee.wait_until_listening()
        with PyVoipClient(callee.sip_port, register=False) as phone:
            phone.dial("echo")
            phone.wait_established(10)
            phone.hangup()
            end = phone.wait_closed(5)
        callee_result = callee.stop()

    assert end.ended_by is CallEndedBy.LOCAL
    assert "REGISTER sip:" not in callee_result.message_log
    assert "BYE sip:echo@" in callee_result.message_log
    assert "Aborting call" not in callee_result.error_log, callee_result.describe()


def test_hears_audio_sent_right_after_answer(tmp_path: Path) -> None:
    prompt = write_wav(tmp_path / "prompt.wav", tone(500, 1.0, 8000, 0.5), 8000)
    callee = registrar_callee(tmp_path, AUDIO_ACTIONS=audio_actions(tmp_path, prompt))
    with callee:
        callee.wait_until_listening()
        with PyVoipClient(callee.sip_port) as phone:
            phone.dial("echo")
            phone.wait_established(10)

            def prompt_ended() -> bool:
                audio = phone.received_audio()
                spans = voiced_spans(audio.samples)
                return bool(spans) and audio.duration_s > spans[0].end_s + 0.3

            wait_until(prompt_ended, 15, "the end of the prompt")
            phone.hangup()
        callee.stop()

    spans = voiced_spans(phone.received_audio().samples)
    assert len(spans) == 1, describe_spans(spans)
    # pyVoIP binds its RTP socket only after handling the 200, so the first
    # packets SIPp sends with the 200 are lost (2 of 50 on a loaded 2-core
    # machine); with pyVoIP's 1 s receive delay the whole prompt was lost.
    assert 0.8 <= spans[0].duration_s <= 1.06, describe_spans(spans)
