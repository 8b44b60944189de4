"""The JSON signaling protocol: valid messages, field errors and fuzzing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.webrtc.protocol import (
    CLIENT_TYPES,
    AgentState,
    AgentStateMessage,
    Call,
    CallState,
    CallStateMessage,
    Candidate,
    Dtmf,
    Error,
    ErrorCode,
    Hangup,
    Hold,
    Incoming,
    Login,
    Message,
    Mute,
    Offer,
    Presence,
    ProtocolError,
    Role,
    Session,
    Transfer,
    TransferKind,
    Unhold,
    encode_message,
    parse_message,
)

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"

EVERY_MESSAGE: list[Message] = [
    Login(token="abc.def"),
    Call(call_id="c-1", to="sales", sdp=SDP),
    Offer(call_id="c-1", sdp=SDP),
    Candidate(call_id="c-1", candidate="candidate:1 1 udp 1 127.0.0.1 5000 typ host", sdp_mid="0"),
    Candidate(call_id="c-1", candidate=None),
    Hangup(call_id="c-1", reason="bye"),
    Dtmf(call_id="c-1", digits="12*#AD", duration_ms=120),
    Hold(call_id="c-1"),
    Unhold(call_id="c-1"),
    Mute(call_id="c-1", muted=True),
    Transfer(call_id="c-1", target_kind=TransferKind.QUEUE, target="billing"),
    AgentStateMessage(state=AgentState.AWAY, reason="lunch"),
    Presence(user="alice", state=AgentState.WRAP_UP, reason="after call", since=1.5, wrap_up_s=30),
    Session(session_id="s1", user="alice", role=Role.AGENT, expires_at=100.0, token="a.b"),
    Incoming(
        call_id="c-2",
        caller="+15550100",
        called="100",
        queue="billing",
        ivr_path=("menu", "billing"),
        words="my bill is wrong",
        intent="billing",
        priority=3,
        waiting_s=12.5,
        sentiment=(-0.25, 0.5),
    ),
    CallStateMessage(call_id="c-1", state=CallState.HELD, reason=""),
    Error(code=ErrorCode.BAD_SDP, message="offer is empty", field="sdp", call_id="c-1"),
]


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=lambda m: m.type)
def test_every_message_round_trips(message: Message) -> None:
    assert parse_message(encode_message(message)) == message


def _error_for(body: dict[str, Any]) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_message(json.dumps(body), accept=CLIENT_TYPES)
    return info.value


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "dtmf", "call_id": "c", "digits": "12x"}, "digits"),
        ({"type": "dtmf", "call_id": "c", "digits": ""}, "digits"),
        ({"type": "dtmf", "call_id": "c", "digits": "1", "duration_ms": 5}, "duration_ms"),
        ({"type": "dtmf", "digits": "1"}, "call_id"),
        ({"type": "call", "call_id": "c", "to": "a b", "sdp": SDP}, "to"),
        ({"type": "call", "call_id": "c" * 65, "to": "sales", "sdp": SDP}, "call_id"),
        ({"type": "call", "call_id": "c", "to": "sales", "sdp": "x" * 16_001}, "sdp"),
        ({"type": "call", "call_id": "c", "to": "sales", "sdp": 5}, "sdp"),
        ({"type": "mute", "call_id": "c", "muted": "yes"}, "muted"),
        ({"type": "mute", "call_id": "c", "muted": True, "extra": 1}, "extra"),
        (
            {"type": "transfer", "call_id": "c", "target_kind": "agent", "target": "x"},
            "target_kind",
        ),
        ({"type": "agent_state", "state": "busy"}, "state"),
        ({"type": "agent_state", "state": "away", "reason": "a\nb"}, "reason"),
        ({"type": "candidate", "call_id": "c", "candidate": "candidate:1"}, "sdp_mid"),
        (
            {"type": "candidate", "call_id": "c", "candidate": None, "sdp_mline_index": 99},
            "sdp_mline_index",
        ),
        ({"type": "login"}, "token"),
        ({"type": 7}, "type"),
    ],
)
def test_invalid_field_is_named(body: dict[str, Any], field: str) -> None:
    error = _error_for(body)
    assert error.code is ErrorCode.BAD_MESSAGE
    assert error.field == field
    assert field in error.message


@pytest.mark.parametrize("sentiment", [[1.5], ["0.5"], [True], [0.1] * 33, 0.5])
def test_incoming_sentiment_checked(sentiment: Any) -> None:
    body = {"type": "incoming", "call_id": "c", "caller": "100", "sentiment": sentiment}
    with pytest.raises(ProtocolError) as info:
        parse_message(json.dumps(body))
    assert info.value.field == "sentiment"


def test_server_only_type_rejected_from_client() -> None:
    error = _error_for({"type": "incoming", "call_id": "c", "caller": "x"})
    assert error.code is ErrorCode.UNKNOWN_TYPE


def test_oversized_frame_rejected_before_parsing() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_message("[" * 70_000, max_bytes=65_536)
    assert info.value.code is ErrorCode.TOO_LARGE


@pytest.mark.parametrize(
    "raw", [b"\xff\xfe", "not json", "[1, 2]", "null", "[" * 5000 + "]" * 5000]
)
def test_non_object_input_is_protocol_error(raw: str | bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_message(raw)
    assert info.value.code in (ErrorCode.BAD_JSON, ErrorCode.BAD_MESSAGE)


def test_error_carries_call_id_of_bad_message() -> None:
    error = _error_for({"type": "dtmf", "call_id": "c-9", "digits": "?"})
    assert error.call_id == "c-9"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_types = st.sampled_from(sorted(CLIENT_TYPES | {"presence", "incoming", "error", "nope"}))
_fields = st.sampled_from(
    [
        "call_id",
        "to",
        "sdp",
        "token",
        "digits",
        "duration_ms",
        "muted",
        "state",
        "reason",
        "target_kind",
        "target",
        "candidate",
        "sdp_mid",
        "sdp_mline_index",
        "caller",
        "ivr_path",
        "priority",
        "waiting_s",
        "code",
        "message",
        "user",
        "since",
        "role",
        "expires_at",
    ]
)


def _assert_typed_or_protocol_error(raw: str | bytes) -> None:
    try:
        message = parse_message(raw)
    except ProtocolError as error:
        assert isinstance(error.code, ErrorCode)
        assert error.message
        return
    assert parse_message(encode_message(message)) == message


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes_give_message_or_protocol_error(raw: bytes) -> None:
    _assert_typed_or_protocol_error(raw)


@settings(max_examples=600, deadline=None)
@given(_types, st.dictionaries(_fields, _json, max_size=6))
def test_fuzz_objects_give_message_or_protocol_error(kind: str, body: dict[str, Any]) -> None:
    _assert_typed_or_protocol_error(json.dumps({"type": kind, **body}))
