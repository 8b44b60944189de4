"""The demo flow called by pyVoIP: registration, then digits as RFC 4733 events or tones."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.model import Flow
from tests.e2e.conftest import (
    assert_clean_log,
    expected_voiced_seconds,
    prompt_text,
    voiced_seconds_between,
)
from tests.support.calls import CallEndedBy
from tests.support.node import RunningNode, voxgate_node
from tests.support.pyvoip_client import PyVoipClient

pytestmark = pytest.mark.peer

DIGIT_AFTER_ANSWER_S = 2.5
CALL_TIMEOUT_S = 60.0
USER = "pyvoip"
PASSWORD = "pyvoip-secret"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """A node where pyVoIP's user may register.

    pyVoIP 1.6.8 answers only MD5 challenges and ignores qop, so the node
    accepts RFC 2069 responses. Its INVITE after a 401 reuses the first
    INVITE's branch and CSeq, which a conformant UAS takes for a
    retransmission, so INVITEs from loopback are trusted without digest.
    """
    settings = {
        "sip": {
            "users": {USER: PASSWORD},
            "digest_algorithms": ["MD5"],
            "digest_allow_rfc2069": True,
            "trusted_networks": ["127.0.0.0/8"],
        }
    }
    with voxgate_node(tmp_path_factory.mktemp("node"), settings) as running:
        yield running


@pytest.mark.parametrize(
    ("digit", "reply_step", "method"),
    [("1", "sales", "rfc4733"), ("2", "support", "inband")],
    ids=["rfc4733-sales", "inband-support"],
)
def test_pyvoip_digit_chooses_reply(
    node: RunningNode, demo_flow: Flow, tmp_path: Path, digit: str, reply_step: str, method: str
) -> None:
    with PyVoipClient(node.sip_port, user=USER, password=PASSWORD) as phone:
        phone.dial("1000")
        answered_at = phone.wait_established(15)
        if method == "rfc4733":
            phone.send_digits_rfc4733(digit, after_answer_s=DIGIT_AFTER_ANSWER_S)
        else:
            phone.send_digits_inband(digit, after_answer_s=DIGIT_AFTER_ANSWER_S)
        pressed_at = time.monotonic()
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
