"""The caller context offered to an agent: the `incoming` message with its priority reason."""

from __future__ import annotations

import json

import pytest

from signaling.webrtc.protocol import Incoming, ProtocolError, encode_message, parse_message


def incoming_frame(**fields: object) -> str:
    body = {"type": "incoming", "call_id": "q1", "caller": "1001", "waiting_s": 3.5, **fields}
    return json.dumps(body)


def test_priority_reason_round_trips() -> None:
    sent = Incoming(call_id="q1", caller="vip", priority=7, priority_reason="vip")
    parsed = parse_message(encode_message(sent))
    assert isinstance(parsed, Incoming)
    assert parsed.priority_reason == "vip"
    assert parsed.priority == 7


def test_priority_reason_is_optional() -> None:
    parsed = parse_message(incoming_frame())
    assert isinstance(parsed, Incoming)
    assert parsed.priority_reason == ""


@pytest.mark.parametrize(
    "value",
    ["x" * 33, "VIP", "has space", "new\nline", 7],
    ids=["too long", "upper case", "space", "control character", "not a string"],
)
def test_invalid_priority_reason_rejected(value: object) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_message(incoming_frame(priority_reason=value))
    assert caught.value.field == "priority_reason"
