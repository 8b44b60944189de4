"""Tests of the SIPp runner: scenarios from templates, exit codes, DTMF pcaps."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.peers.conftest import require_binary
from tests.support.audio_analysis import (
    audio_from_rtp,
    describe_spans,
    digits_from_events,
    duration_matches,
    parse_rtp,
    telephone_events,
    voiced_spans,
)
from tests.support.sipp import (
    EXIT_ALL_CALLS_PASSED,
    EXIT_BIND_FAILED,
    EXIT_FATAL_ERROR,
    EXIT_SOME_CALL_FAILED,
    SCENARIO_DIR,
    SippProcess,
    audio_actions,
    debian_dtmf_pcap,
    dtmf_actions,
    render_scenario,
    run_sipp,
    write_audio_pcap,
    write_dtmf_pcap,
)
from tests.support.wav import silence, tone, write_wav

pytestmark = pytest.mark.peer


@pytest.fixture(autouse=True)
def _sipp_installed() -> None:
    require_binary("sipp")


def caller_scenario(
    work_dir: Path,
    digits: str = "",
    *,
    microphone: Path | None = None,
    digit_delay_ms: int = 200,
    bye_timeout_ms: int = 10_000,
) -> Path:
    return render_scenario(
        SCENARIO_DIR / "uac_call.xml",
        work_dir / "caller.xml",
        {
            "AUDIO_ACTIONS": audio_actions(work_dir, microphone) if microphone else "",
            "DIGIT_DELAY_MS": digit_delay_ms,
            "DTMF_ACTIONS": dtmf_actions(work_dir, digits) if digits else "",
            "BYE_TIMEOUT_MS": bye_timeout_ms,
        },
    )


def read_pcap_udp_payloads(path: Path) -> list[bytes]:
    data = path.read_bytes()
    payloads, offset = [], 24
    while offset < len(data):
        length = struct.unpack_from("<I", data, offset + 8)[0]
        frame = data[offset + 16 : offset + 16 + length]
        payloads.append(frame[14 + 20 + 8 :])
        offset += 16 + length
    return payloads


def test_dtmf_pcap_holds_one_rfc4733_event(tmp_path: Path) -> None:
    path = write_dtmf_pcap(tmp_path / "d.pcap", "7", rtp_timestamp=1234, first_sequence=40)
    packets = [parse_rtp(payload) for payload in read_pcap_udp_payloads(path)]
    assert [p.sequence for p in packets] == list(range(40, 47))
    assert {p.timestamp for p in packets} == {1234}
    assert {p.payload_type for p in packets} == {101}
    assert digits_from_events(telephone_events(packets)) == "7"


def test_debian_dtmf_pcap_names() -> None:
    assert debian_dtmf_pcap("#").name == "dtmf_2833_pound.pcap"
    assert debian_dtmf_pcap("*").name == "dtmf_2833_star.pcap"
    with pytest.raises(FileNotFoundError, match="'A'"):
        debian_dtmf_pcap("A")


def test_render_rejects_missing_and_unknown_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"without a value \['BYE_TIMEOUT_MS'\]"):
        render_scenario(
            SCENARIO_DIR / "uac_call.xml",
            tmp_path / "x.xml",
            {"AUDIO_ACTIONS": "", "DIGIT_DELAY_MS": 1, "DTMF_ACTIONS": ""},
        )
    with pytest.raises(ValueError, match=r"without a placeholder \['NOT_THERE'\]"):
        render_scenario(SCENARIO_DIR / "uas_reject.xml", tmp_path / "x.xml", {"NOT_THERE": 1})


def test_call_with_audio_and_digits_passes(tmp_path: Path, needs_capture: None) -> None:
    microphone = write_wav(
        tmp_path / "tone.wav",
        np.concatenate([tone(440, 0.6, 8000, 0.5), silence(0.1, 8000)]),
        8000,
    )
    # SIPp cancels a pcap that is still playing when the call ends, so the
    # callee hangs up well after the caller's tone and digits (about 2.2 s).
    callee = SippProcess(
        render_scenario(
            SCENARIO_DIR / "uas_echo_hangup.xml", tmp_path / "callee.xml", {"HANGUP_AFTER_MS": 4000}
        ),
        tmp_path,
        rtp_echo=True,
        capture_rtp=True,
    )
    with callee:
        callee.wait_until_listening()
        caller = SippProcess(
            caller_scenario(tmp_path, "15#", microphone=microphone, digit_delay_ms=1000),
            tmp_path,
            remote=("127.0.0.1", callee.sip_port),
            capture_rtp=True,
        )
        with caller:
            caller_result = caller.wait(20)
        callee_result = callee.wait(10)

    assert caller_result.returncode == EXIT_ALL_CALLS_PASSED, caller_result.describe()
    assert caller_result.passed
    assert callee_result.passed, callee_result.describe()
    events = telephone_events(callee.received_packets())
    assert digits_from_events(events) == "15#"
    assert sum(event.end for event in events) == 9
    echoed = voiced_spans(caller.received_audio().samples)
    assert len(echoed) == 1, describe_spans(echoed)
    assert duration_matches(echoed[0], 0.6, 0.06), describe_spans(echoed)
    assert digits_from_events(telephone_events(caller.received_packets())) == "15#"


def test_audio_pcap_holds_pcmu_frames(tmp_path: Path) -> None:
    samples = tone(300, 0.05, 8000, 0.5)
    path = write_audio_pcap(tmp_path / "a.pcap", samples, first_timestamp=800)
    packets = [parse_rtp(payload) for payload in read_pcap_udp_payloads(path)]
    assert [p.timestamp for p in packets] == [800, 960, 1120]
    assert [p.marker for p in packets] == [True, False, False]
    assert {p.payload_type for p in packets} == {0}
    decoded = audio_from_rtp(packets).samples
    assert len(decoded) == 480
    assert np.abs(decoded[:400].astype(np.int32) - samples).max() < 1100
    assert not decoded[400:].any()


def test_rejected_call_exits_with_failure(tmp_path: Path) -> None:
    callee = SippProcess(SCENARIO_DIR / "uas_reject.xml", tmp_path)
    with callee:
        callee.wait_until_listening()
        caller = run_sipp(
            caller_scenario(tmp_path), tmp_path, remote=("127.0.0.1", callee.sip_port), timeout_s=20
        )
        callee.wait(10)
    assert caller.returncode == EXIT_SOME_CALL_FAILED, caller.describe()
    assert not caller.passed
    assert "486 Busy Here" in caller.error_log + caller.message_log


def test_unanswered_call_fails_at_global_timeout(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent_peer:
        silent_peer.bind(("127.0.0.1", 0))
        result = run_sipp(
            caller_scenario(tmp_path),
            tmp_path,
            remote=silent_peer.getsockname(),
            global_timeout_s=2,
            timeout_s=20,
        )
    assert not result.timed_out
    # -timeout_error turns SIPp's global timeout into a fatal error (exit -1).
    assert result.returncode == EXIT_FATAL_ERROR, result.describe()
    assert "timed out after" in result.error_log


def test_busy_sip_port_exits_with_bind_failure(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        result = run_sipp(
            SCENARIO_DIR / "uas_reject.xml",
            tmp_path,
            sip_port=holder.getsockname()[1],
            timeout_s=20,
        )
    assert result.returncode == EXIT_BIND_FAILED, result.describe()


def test_wait_stops_sipp_that_outlives_the_timeout(tmp_path: Path) -> None:
    callee = SippProcess(SCENARIO_DIR / "uas_reject.xml", tmp_path)
    with callee:
        result = callee.wait(1.0)
    assert result.timed_out
    assert not result.passed
