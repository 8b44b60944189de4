"""The JSON signaling protocol between browser softphones and the server.

Pure code: text in, a typed message or a `ProtocolError` out, and typed
messages back to text. Every frame is one JSON object with a "type" member;
the other members depend on the type. Sizes are bounded per field, and an
unknown member is rejected, so that a typo in a client shows up as an error
that names the member instead of being ignored.

Client to server: login, call, offer, candidate, hangup, dtmf, hold, unhold,
mute, transfer, agent_state. Server to client: session, answer, candidate
(reserved: aiortc does not trickle its own candidates), incoming, call_state,
agent_state, presence, hangup, error. docs/signaling.md lists every field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum, StrEnum
from typing import Any, ClassVar, TypeVar

MAX_FRAME_BYTES = 65_536
MAX_SDP_CHARS = 16_000
MAX_CANDIDATE_CHARS = 512
MAX_TOKEN_CHARS = 1_024
MAX_REASON_CHARS = 200
MAX_DIGITS = 32
MAX_WORDS_CHARS = 2_000
MAX_PATH_STEPS = 32
MAX_SENTIMENT_TURNS = 32

_CALL_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_DESTINATION = re.compile(r"[A-Za-z0-9_.+*#@\-]{1,64}")
# A transfer target: a queue name, a number or a SIP URI (host, port and parameters
# included). The application checks its form further.
_TRANSFER_TARGET = re.compile(r"[A-Za-z0-9_.+*#@:;=%!~\[\]\-]{1,256}")
_PRIORITY_REASON = re.compile(r"[a-z0-9_.\-]{0,32}")
_INCOMING_KIND = re.compile(r"^(call|callback)$")
_USER = re.compile(r"[A-Za-z0-9_.@\-]{1,64}")
_DIGITS = re.compile(r"[0-9*#A-D]+")


class ErrorCode(StrEnum):
    """Machine-readable error codes sent in `error` messages."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    TOO_LARGE = "too_large"
    UNKNOWN_TYPE = "unknown_type"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    BAD_STATE = "bad_state"
    BAD_SDP = "bad_sdp"
    NOT_FOUND = "not_found"
    OVERLOADED = "overloaded"
    INTERNAL = "internal"


class ProtocolError(ValueError):
    """A peer sent a frame that breaks the protocol; the connection stays usable."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        call_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.call_id = call_id


class AgentState(StrEnum):
    """Agent states; a client may request only available, away and wrap_up."""

    OFFLINE = "offline"
    AVAILABLE = "available"
    AWAY = "away"
    RINGING = "ringing"
    BUSY = "busy"
    WRAP_UP = "wrap_up"


CLIENT_AGENT_STATES = frozenset({AgentState.AVAILABLE, AgentState.AWAY, AgentState.WRAP_UP})


class CallState(StrEnum):
    """Call states reported to a browser in `call_state` messages."""

    RINGING = "ringing"
    CONNECTED = "connected"
    HELD = "held"
    ENDED = "ended"


class Role(StrEnum):
    CALLER = "caller"
    AGENT = "agent"


class TransferKind(StrEnum):
    QUEUE = "queue"
    NUMBER = "number"


@dataclass(frozen=True, slots=True)
class Login:
    type: ClassVar[str] = "login"
    token: str


@dataclass(frozen=True, slots=True)
class Call:
    """Start a call to `to` with the browser's SDP offer."""

    type: ClassVar[str] = "call"
    call_id: str
    to: str
    sdp: str


@dataclass(frozen=True, slots=True)
class Offer:
    """An SDP offer for an existing call (an agent accepting `incoming`)."""

    type: ClassVar[str] = "offer"
    call_id: str
    sdp: str


@dataclass(frozen=True, slots=True)
class Answer:
    type: ClassVar[str] = "answer"
    call_id: str
    sdp: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """A trickled ICE candidate; `candidate` None ends the remote candidates."""

    type: ClassVar[str] = "candidate"
    call_id: str
    candidate: str | None
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


@dataclass(frozen=True, slots=True)
class Hangup:
    type: ClassVar[str] = "hangup"
    call_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Dtmf:
    """Keypad digits sent over signaling (the fallback to RFC 4733 in RTP)."""

    type: ClassVar[str] = "dtmf"
    call_id: str
    digits: str
    duration_ms: int = 100


@dataclass(frozen=True, slots=True)
class Hold:
    type: ClassVar[str] = "hold"
    call_id: str


@dataclass(frozen=True, slots=True)
class Unhold:
    type: ClassVar[str] = "unhold"
    call_id: str


@dataclass(frozen=True, slots=True)
class Mute:
    type: ClassVar[str] = "mute"
    call_id: str
    muted: bool


@dataclass(frozen=True, slots=True)
class Transfer:
    """Blind transfer of the call to a queue or a number."""

    type: ClassVar[str] = "transfer"
    call_id: str
    target_kind: TransferKind
    target: str


@dataclass(frozen=True, slots=True)
class AgentStateMessage:
    type: ClassVar[str] = "agent_state"
    state: AgentState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Presence:
    """An agent's state as stored by the server, sent after every change."""

    type: ClassVar[str] = "presence"
    user: str
    state: AgentState
    reason: str = ""
    since: float = 0.0
    wrap_up_s: int = 0


@dataclass(frozen=True, slots=True)
class Session:
    """The reply to a valid login, repeated with a fresh token before the last one expires.

    `token` replaces the client's token for its next reconnect; `expires_at`
    is that token's expiry.
    """

    type: ClassVar[str] = "session"
    session_id: str
    user: str
    role: Role
    expires_at: float
    token: str = ""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A call offered to an agent, with what the IVR learned about the caller.

    `kind` is "call" for a caller on the line and "callback" for a caller to
    be called back once the agent answers (then `caller` is the number called).
    """

    type: ClassVar[str] = "incoming"
    call_id: str
    caller: str
    called: str = ""
    queue: str = ""
    ivr_path: Sequence[str] = field(default_factory=tuple)
    words: str = ""
    intent: str = ""
    priority: int = 0
    waiting_s: float = 0.0
    priority_reason: str = ""
    # Sentiment score (-1 to 1) of each spoken turn in the IVR, oldest first.
    sentiment: Sequence[float] = field(default_factory=tuple)
    kind: str = "call"


@dataclass(frozen=True, slots=True)
class CallStateMessage:
    type: ClassVar[str] = "call_state"
    call_id: str
    state: CallState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Error:
    type: ClassVar[str] = "error"
    code: ErrorCode
    message: str
    field: str | None = None
    call_id: str | None = None


Message = (
    Login
    | Call
    | Offer
    | Answer
    | Candidate
    | Hangup
    | Dtmf
    | Hold
    | Unhold
    | Mute
    | Transfer
    | AgentStateMessage
    | Presence
    | Session
    | Incoming
    | CallStateMessage
    | Error
)

_E = TypeVar("_E", bound=Enum)


class _Fields:
    """Typed access to the members of one JSON object, tracking which were read."""

    def __init__(self, obj: Mapping[str, Any], call_id: str | None) -> None:
        self._obj = obj
        self._read: set[str] = {"type"}
        self.call_id = call_id

    def _fail(self, name: str, message: str) -> ProtocolError:
        return ProtocolError(ErrorCode.BAD_MESSAGE, message, field=name, call_id=self.call_id)

    def _get(self, name: str, required: bool) -> Any:
        self._read.add(name)
        if name not in self._obj:
            if required:
                raise self._fail(name, f"missing field '{name}'")
            return None
        return self._obj[name]

    def text(
        self,
        name: str,
        max_chars: int,
        *,
        required: bool = True,
        pattern: re.Pattern[str] | None = None,
        default: str = "",
    ) -> str:
        value = self._get(name, required)
        if value is None and not required:
            return default
        if not isinstance(value, str):
            raise self._fail(name, f"field '{name}' must be a string")
        if len(value) > max_chars:
            raise self._fail(name, f"field '{name}' is longer than {max_chars} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise self._fail(name, f"field '{name}' has invalid characters or length")
        if pattern is None and not value.isprintable() and name != "sdp":
            raise self._fail(name, f"field '{name}' contains control characters")
        return value

    def optional_text(self, name: str, max_chars: int) -> str | None:
        if self._obj.get(name) is None:
            self._read.add(name)
            return None
        return self.text(name, max_chars)

    def integer(
        self, name: str, low: int, high: int, *, required: bool = True, default: int = 0
    ) -> int:
        value = self._get(name, required)
        if value is None and not required:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(name, f"field '{name}' must be an integer")
        if not low <= value <= high:
            raise self._fail(name, f"field '{name}' must be between {low} and {high}")
        return value

    def optional_integer(self, name: str, low: int, high: int) -> int | None:
        if self._obj.get(name) is None:
            self._read.add(name)
            return None
        return self.integer(name, low, high)

    def number(self, name: str, low: float, high: float, *, default: float = 0.0) -> float:
        value = self._get(name, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(name, f"field '{name}' must be a number")
        if not math.isfinite(value) or not low <= value <= high:
            raise self._fail(name, f"field '{name}' must be between {low} and {high}")
        return float(value)

    def boolean(self, name: str) -> bool:
        value = self._get(name, True)
        if not isinstance(value, bool):
            raise self._fail(name, f"field '{name}' must be true or false")
        return value

    def choice(self, name: str, enum: type[_E], *, allowed: frozenset[_E] | None = None) -> _E:
        value = self._get(name, True)
        options = allowed if allowed is not None else frozenset(enum)
        names = ", ".join(sorted(str(option.value) for option in options))
        try:
            member = enum(value)
        except (ValueError, TypeError):
            raise self._fail(name, f"field '{name}' must be one of: {names}") from None
        if member not in options:
            raise self._fail(name, f"field '{name}' must be one of: {names}")
        return member

    def text_list(self, name: str, max_items: int, max_chars: int) -> tuple[str, ...]:
        value = self._get(name, False)
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) > max_items:
            raise self._fail(name, f"field '{name}' must be a list of at most {max_items} strings")
        for item in value:
            if not isinstance(item, str) or len(item) > max_chars or not item.isprintable():
                raise self._fail(
                    name, f"field '{name}' items must be strings of at most {max_chars}"
                )
        return tuple(value)

    def number_list(self, name: str, max_items: int, low: float, high: float) -> tuple[float, ...]:
        value = self._get(name, False)
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) > max_items:
            raise self._fail(name, f"field '{name}' must be a list of at most {max_items} numbers")
        for item in value:
            if (
                isinstance(item, bool)
                or not isinstance(item, int | float)
                or not math.isfinite(item)
                or not low <= item <= high
            ):
                raise self._fail(
                    name, f"field '{name}' items must be numbers between {low} and {high}"
                )
        return tuple(float(item) for item in value)

    def reject_unknown(self) -> None:
        for name in self._obj:
            if name not in self._read:
                raise self._fail(name, f"unexpected field '{name}'")


def _call_id(f: _Fields) -> str:
    return f.text("call_id", 64, pattern=_CALL_ID)


def _parse_login(f: _Fields) -> Message:
    return Login(token=f.text("token", MAX_TOKEN_CHARS))


def _parse_call(f: _Fields) -> Message:
    return Call(
        call_id=_call_id(f),
        to=f.text("to", 64, pattern=_DESTINATION),
        sdp=f.text("sdp", MAX_SDP_CHARS),
    )


def _parse_offer(f: _Fields) -> Message:
    return Offer(call_id=_call_id(f), sdp=f.text("sdp", MAX_SDP_CHARS))


def _parse_answer(f: _Fields) -> Message:
    return Answer(call_id=_call_id(f), sdp=f.text("sdp", MAX_SDP_CHARS))


def _parse_candidate(f: _Fields) -> Message:
    call_id = _call_id(f)
    candidate = f.optional_text("candidate", MAX_CANDIDATE_CHARS)
    sdp_mid = f.optional_text("sdp_mid", 32)
    sdp_mline_index = f.optional_integer("sdp_mline_index", 0, 63)
    if candidate and sdp_mid is None and sdp_mline_index is None:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            "field 'sdp_mid' or 'sdp_mline_index' is required with a candidate",
            field="sdp_mid",
            call_id=call_id,
        )
    return Candidate(
        call_id=call_id,
        candidate=candidate or None,
        sdp_mid=sdp_mid,
        sdp_mline_index=sdp_mline_index,
    )


def _parse_hangup(f: _Fields) -> Message:
    return Hangup(call_id=_call_id(f), reason=f.text("reason", MAX_REASON_CHARS, required=False))


def _parse_dtmf(f: _Fields) -> Message:
    call_id = _call_id(f)
    digits = f.text("digits", MAX_DIGITS)
    if not _DIGITS.fullmatch(digits):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            "field 'digits' must contain only 0-9, *, # and A-D",
            field="digits",
            call_id=call_id,
        )
    duration_ms = f.integer("duration_ms", 40, 2000, required=False, default=100)
    return Dtmf(call_id=call_id, digits=digits, duration_ms=duration_ms)


def _parse_hold(f: _Fields) -> Message:
    return Hold(call_id=_call_id(f))


def _parse_unhold(f: _Fields) -> Message:
    return Unhold(call_id=_call_id(f))


def _parse_mute(f: _Fields) -> Message:
    return Mute(call_id=_call_id(f), muted=f.boolean("muted"))


def _parse_transfer(f: _Fields) -> Message:
    return Transfer(
        call_id=_call_id(f),
        target_kind=f.choice("target_kind", TransferKind),
        target=f.text("target", 256, pattern=_TRANSFER_TARGET),
    )


def _parse_agent_state(f: _Fields) -> Message:
    state = f.choice("state", AgentState, allowed=CLIENT_AGENT_STATES)
    return AgentStateMessage(state=state, reason=f.text("reason", MAX_REASON_CHARS, required=False))


def _parse_presence(f: _Fields) -> Message:
    return Presence(
        user=f.text("user", 64, pattern=_USER),
        state=f.choice("state", AgentState),
        reason=f.text("reason", MAX_REASON_CHARS, required=False),
        since=f.number("since", 0.0, 1e11),
        wrap_up_s=f.integer("wrap_up_s", 0, 86_400, required=False),
    )


def _parse_session(f: _Fields) -> Message:
    return Session(
        session_id=f.text("session_id", 64, pattern=_CALL_ID),
        user=f.text("user", 64, pattern=_USER),
        role=f.choice("role", Role),
        expires_at=f.number("expires_at", 0.0, 1e11),
        token=f.text("token", MAX_TOKEN_CHARS, required=False),
    )


def _parse_incoming(f: _Fields) -> Message:
    return Incoming(
        call_id=_call_id(f),
        caller=f.text("caller", 64),
        called=f.text("called", 64, required=False),
        queue=f.text("queue", 64, required=False),
        ivr_path=f.text_list("ivr_path", MAX_PATH_STEPS, 64),
        words=f.text("words", MAX_WORDS_CHARS, required=False),
        intent=f.text("intent", 64, required=False),
        priority=f.integer("priority", 0, 9, required=False),
        waiting_s=f.number("waiting_s", 0.0, 1e7),
        priority_reason=f.text("priority_reason", 32, required=False, pattern=_PRIORITY_REASON),
        sentiment=f.number_list("sentiment", MAX_SENTIMENT_TURNS, -1.0, 1.0),
        kind=f.text("kind", 16, required=False, pattern=_INCOMING_KIND, default="call"),
    )


def _parse_call_state(f: _Fields) -> Message:
    return CallStateMessage(
        call_id=_call_id(f),
        state=f.choice("state", CallState),
        reason=f.text("reason", MAX_REASON_CHARS, required=False),
    )


def _parse_error(f: _Fields) -> Message:
    return Error(
        code=f.choice("code", ErrorCode),
        message=f.text("message", 500),
        field=f.optional_text("field", 64),
        call_id=f.optional_text("call_id", 64),
    )


_PARSERS: dict[str, Callable[[_Fields], Message]] = {
    "login": _parse_login,
    "call": _parse_call,
    "offer": _parse_offer,
    "answer": _parse_answer,
    "candidate": _parse_candidate,
    "hangup": _parse_hangup,
    "dtmf": _parse_dtmf,
    "hold": _parse_hold,
    "unhold": _parse_unhold,
    "mute": _parse_mute,
    "transfer": _parse_transfer,
    "agent_state": _parse_agent_state,
    "presence": _parse_presence,
    "session": _parse_session,
    "incoming": _parse_incoming,
    "call_state": _parse_call_state,
    "error": _parse_error,
}

CLIENT_TYPES = frozenset(
    {
        "login",
        "call",
        "offer",
        "candidate",
        "hangup",
        "dtmf",
        "hold",
        "unhold",
        "mute",
        "transfer",
        "agent_state",
    }
)
SERVER_TYPES = frozenset(
    {
        "session",
        "answer",
        "candidate",
        "incoming",
        "call_state",
        "agent_state",
        "presence",
        "hangup",
        "error",
    }
)


def parse_message(
    raw: str | bytes, *, max_bytes: int = MAX_FRAME_BYTES, accept: frozenset[str] | None = None
) -> Message:
    """Parse one signaling frame.

    `accept` limits the message types (CLIENT_TYPES on the server). Raises
    ProtocolError, and nothing else, for any input.
    """
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message of {size} bytes exceeds {max_bytes}")
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.BAD_JSON, "message is not valid UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "message must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "missing field 'type'", field="type")
    parser = _PARSERS.get(kind)
    if parser is None or (accept is not None and kind not in accept):
        shown = kind[:32] if kind.isprintable() else "?"
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type '{shown}'", field="type")
    raw_call_id = obj.get("call_id")
    call_id = (
        raw_call_id if isinstance(raw_call_id, str) and _CALL_ID.fullmatch(raw_call_id) else None
    )
    fields = _Fields(obj, call_id)
    message = parser(fields)
    fields.reject_unknown()
    return message


def encode_message(message: Message) -> str:
    """Serialize a message to one compact JSON text frame."""
    body: dict[str, Any] = {"type": message.type}
    for name, value in asdict(message).items():
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        body[name] = value
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def error_message(error: ProtocolError) -> Error:
    return Error(code=error.code, message=error.message, field=error.field, call_id=error.call_id)
