"""The demo flow called by baresip: a real softphone presses a digit and hears the reply."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivr.model import Flow
from tests.e2e.conftest import assert_clean_log, assert_demo_call
from tests.support.baresip import BaresipClient
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

    assert_demo_call(
        demo_flow,
        timeline,
        end,
        answered_at=answered_at,
        pressed_at=pressed_at,
        reply_step=reply_step,
    )
    assert_clean_log(node)
