"""The demo flow called by baresip: a real softphone presses a digit and hears the reply."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivr.model import Flow
from tests.e2e.conftest import (
    assert_clean_log,
    expected_voiced_seconds,
    prompt_text,
    voiced_seconds_between,
)
from tests.support.baresip import BaresipClient
from tests.support.calls import CallEndedBy
from tests.support.capture import capture_available
from tests.support.node import RunningNode
from tests.support.wav import silence, write_wav

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed"),
    pytest.mark.skipif(not capture_available(), reason="packet capture on lo needs root"),
]

DIGIT_AFTER_ANSWER_S = 2.5
CALL_TIMEOUT_S = 60.0


@pytest.mark.parametrize(
    ("digit", "reply_step"), [("1", "sales"), ("2", "support")], ids=["sales", "support"]
)
def test_baresip_digit_chooses_reply(
    node: RunningNode, demo_flow: Flow, tmp_path: Path, digit: str, reply_step: str
) -> None:
    microphone = write_wav(tmp_path / "quiet.wav", silence(1.0, 8000), 8000)
    with BaresipClient(tmp_path, microphone=microphone, max_call_s=CALL_TIMEOUT_S) as phone:
        phone.dial(f"sip:1000@127.0.0.1:{node.sip_port}")
        answered_at = phone.wait_established(15)
        (pressed_at,) = phone.send_digits(digit, after_answer_s=DIGIT_AFTER_ANSWER_S)
        end = phone.wait_closed(CALL_TIMEOUT_S)
        timeline = phone.received_audio()

    assert end.ended_by is CallEndedBy.REMOTE, f"call ended by {end.ended_by}: {end.reason}"
    welcome = voiced_seconds_between(timeline, answered_at, pressed_at)
    assert welcome > 1.0, f"only {welcome:.2f} s of welcome audio before the digit"

    expected = expected_voiced_seconds(
        [prompt_text(demo_flow, reply_step), prompt_text(demo_flow, "goodbye")],
        demo_flow.voice,
    )
    reply = voiced_seconds_between(timeline, pressed_at, end.at + 1.0)
    assert abs(reply - expected) <= 0.25 * expected + 0.3, (
        f"heard {reply:.2f} s after the digit, expected about {expected:.2f} s "
        f"for the {reply_step} reply"
    )
    assert_clean_log(node)
