"""The C fast path of SIP parsing (`signaling.sip._sipcore`) decides as the Python reference does.

For each input, `_sipcore.parse_datagram` either returns None, and then
`parse_datagram` runs `python_parse_datagram`, or a message equal, field by
field and type by type, to the one `python_parse_datagram` returns. So for
an input that the reference rejects, the C path must return None, and the
caller gets the reference's error.

The inputs are the RFC 4475 torture messages, the field cases and a few
call messages, each as is and mutated. FUZZ_INPUTS of them come from the
byte-level mutation engine, and FUZZ_INPUTS more from `mutate_lines`, which
edits header lines with pieces of the SIP grammar. Those stay close enough
to valid that many reach the C path's later checks.
"""

from __future__ import annotations

import dataclasses
import enum
import random
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from signaling.sip import headers as headers_module
from signaling.sip import message, parser
from signaling.sip.errors import SipSyntaxError
from signaling.sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    canonical_name,
    python_canonical_items,
)
from signaling.sip.message import (
    REASON_PHRASES,
    SipMessage,
    SipRequest,
    SipResponse,
    python_build_response,
    python_to_bytes,
)
from signaling.sip.parser import DEFAULT_LIMITS, InvalidRequest, Limits, python_parse_datagram
from signaling.sip.uri import SipUri, parse_host
from tests.fuzz.mutate import INPUTS, SEED, inputs

DATA = Path(__file__).resolve().parents[1] / "data"


def call_messages() -> list[bytes]:
    """The messages of a SIPp call (INVITE, ACK, BYE, 200) and some grammar corners."""
    lines = {
        "invite": [
            "INVITE sip:15550100000@127.0.0.1:5060 SIP/2.0",
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-0;rport",
            "From: sipp <sip:sipp@127.0.0.1:5070>;tag=1SIPpTag001",
            "To: <sip:15550100000@127.0.0.1:5060>",
            "Call-ID: 1-12345@127.0.0.1",
            "CSeq: 1 INVITE",
            "Contact: sip:sipp@127.0.0.1:5070",
            "Max-Forwards: 70",
            "Subject: Performance Test",
            "Content-Type: application/sdp",
            "Content-Length: 4",
        ],
        "ok": [
            "SIP/2.0 200 OK",
            "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;received=127.0.0.1;rport=5060",
            "Record-Route: <sip:p1.example.com;lr>, <sip:[2001:db8::1]:5061;lr;transport=tcp>",
            'From: "Queue \\"A\\"" <sips:agent%40x@example.com;user=phone>;tag=a1',
            'To: <sip:15550100000@127.0.0.1:5060>;tag=b2;x="quoted;value"',
            "i: abc@192.0.2.1",
            "CSeq: 2 BYE",
            "m: <sip:u:pw@192.0.2.10:5070;transport=udp?subject=x&h=%41>;expires=60, *",
            "l: 0",
        ],
        "tel": [
            "OPTIONS tel:+15550100001;phone-context=example.com SIP/2.0",
            "v: SIP/2.0/TCP host.example.com.;branch=z9hG4bK7 ; ttl=3",
            "v: SIP/2.0/UDP 192.0.2.1:5060;maddr=[2001:db8::2]",
            "f: Alice Smith <tel:+15550100001>;tag=x",
            "t: sip:b@example.com;tag=y",
            "Call-ID: x",
            "CSeq: 9 OPTIONS",
            "Max-Forwards: 000255",
            "Content-Length: 0",
        ],
    }
    messages = [("\r\n".join(item) + "\r\n\r\n").encode() for item in lines.values()]
    messages[0] += b"v=0\r"
    return messages


def corpus() -> list[bytes]:
    patterns = ("sip/rfc4475/*.dat", "sip/field/*.sip", "sdp/*.sip")
    found = [path.read_bytes() for pattern in patterns for path in sorted(DATA.glob(pattern))]
    assert len(found) > 50, "the RFC 4475 and field SIP messages are missing from tests/data"
    return found + call_messages()


# Pieces of the SIP grammar that `mutate_lines` inserts: separators, quotes,
# escapes, and hosts, ports and URIs near the edges of what is valid.
PIECES = [
    ";", ",", "=", ":", "@", "<", ">", '"', "\\", " ", "\t", "?", "&", "%", "%41", "%4", "%zz",
    "[", "]", "/", ".", "-", "*", "+", "~", "`", "'", "!", "(", ")", "{", "}", "$", "#",
    ";tag=", ";branch=z9hG4bK", ";branch=", ";received=", ";received", ";lr", ";ttl=", ";maddr=",
    ";transport=TCP", ";x=\"a\\\"b\"", '""', "sip:", "sips:", "tel:", "mailto:", "SIP:", "1sip:",
    "sip:a@b", "<sip:x@y>", "*", "127.0.0.1", "010.0.0.1", "256.1.1.1", "1.2.3", "1.2.3.4.5",
    "[::1]", "[2001:db8::1]:5060", "[zz::1]", "[::1", "host-", "-host", "a..b", "a.b.", "9x",
    ":5060", ":0", ":65535", ":65536", ":123456", ":", "user:pw@", ":@", "SIP/2.0/", "SIP/3.0/",
    "SIP / 2.0 / UDP", "2147483647", "2147483648", "99999999999", "0", "255", "256", "00",
    "INVITE", "invite", "ACK", "BYE",
]  # fmt: skip
NAMES = ["Via", "v", "VIA", "From", "f", "To", "t", "Call-ID", "i", "CSeq", "Contact", "m",
         "Record-Route", "Max-Forwards", "Content-Length", "l", "Content-Type", "c", "X-Custom",
         "x", "Route"]  # fmt: skip


def mutate_lines(data: bytes, rng: random.Random) -> bytes:
    """Edit the header section line by line with grammar pieces, keeping CRLF framing."""
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        return data
    lines = head.decode("latin-1").split("\r\n")
    for _ in range(rng.randint(1, 3)):
        index = rng.randrange(len(lines))
        line = lines[index]
        choice = rng.randrange(7)
        position = rng.randint(0, len(line))
        if choice <= 2:
            lines[index] = line[:position] + rng.choice(PIECES) + line[position:]
        elif choice == 3:
            lines[index] = line[:position] + line[position + rng.randint(1, 8) :]
        elif choice == 4 and position < len(line):
            lines[index] = line[:position] + rng.choice(PIECES) + line[position + 1 :]
        elif choice == 5 and index > 0:
            _, colon, value = line.partition(":")
            lines[index] = rng.choice(NAMES) + colon + value if colon else line
        else:
            lines.insert(rng.randint(1, len(lines)), lines[rng.randrange(len(lines))])
    return "\r\n".join(lines).encode("latin-1") + separator + body


def grammar_inputs(seeds: list[bytes], count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [mutate_lines(rng.choice(seeds), rng) for _ in range(count)]


def snapshot(value: object) -> object:
    """Return a comparable picture of a parsed message: types, fields and order."""
    if isinstance(value, Headers):
        index = [(key, snapshot(values)) for key, values in value.by_key().items()]
        return ("Headers", [snapshot(item) for item in value], index)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return (type(value).__name__, [(f.name, snapshot(getattr(value, f.name))) for f in fields])
    if isinstance(value, dict):
        return ("dict", [(snapshot(key), snapshot(item)) for key, item in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [snapshot(item) for item in value])
    return (type(value).__name__, value)


def python_verdict(data: bytes, limits: Limits) -> object:
    try:
        return snapshot(python_parse_datagram(data, limits))
    except SipSyntaxError as error:
        return f"{type(error).__name__}: {error.reason} ({error.status})"


def compare(data: bytes, limits: Limits) -> bool:
    """Return True when the C path decided `data`, after asserting that it matches the reference."""
    assert parser.native is not None, "signaling.sip._sipcore is not built: run `make extensions`"
    message = parser.native.parse_datagram(data, limits)
    if message is None:
        return False
    assert snapshot(message) == python_verdict(data, limits), f"input: {data!r}"
    return True


def check_all(name: str, items: list[bytes], limits: Limits = DEFAULT_LIMITS) -> int:
    decided = 0
    for index, data in enumerate(items):
        try:
            decided += compare(data, limits)
        except AssertionError as error:
            pytest.fail(f"{name}: input {index} (FUZZ_SEED={SEED}) differs:\n{error}")
    return decided


def test_sipcore_decides_call_messages() -> None:
    for data in call_messages():
        assert compare(data, DEFAULT_LIMITS), f"the C path handed back {data!r}"


def test_sipcore_matches_python_on_corpus() -> None:
    decided = check_all("corpus", corpus())
    assert decided >= 25


def test_sipcore_matches_python_on_byte_mutations() -> None:
    items = inputs(corpus())
    decided = check_all("byte mutations", items)
    # The C path must decide a real share, or this test compares nothing.
    assert decided >= len(items) // 20


def grammar_seeds() -> list[bytes]:
    """The corpus with the call messages weighted up, because most torture messages are invalid."""
    return corpus() + call_messages() * 15


def test_sipcore_matches_python_on_grammar_mutations() -> None:
    items = grammar_inputs(grammar_seeds(), INPUTS, SEED)
    decided = check_all("grammar mutations", items)
    assert decided >= len(items) // 10


def test_sipcore_matches_python_under_small_limits() -> None:
    limits = Limits(
        max_message_bytes=900, max_header_bytes=600, max_line_bytes=90, max_headers=9,
        max_body_bytes=40,
    )  # fmt: skip
    items = grammar_inputs(grammar_seeds(), INPUTS // 10, SEED + 1)
    decided = check_all("small limits", items, limits)
    assert decided >= len(items) // 100


def test_sipcore_header_name_table_matches_python() -> None:
    """The C parser's table of header names (256 slots) maps each spelling as the reference does.

    300 extra names, in several spellings and one longer than the 32 bytes that
    the table keeps, push the call messages' names out of their slots and back,
    and every message is parsed twice.
    """
    names = [f"X-Name-{number}" for number in range(300)]
    names += ["subject", "SUBJECT", "s", "User-Agent", "user-agent", "X-" + "a" * 40]
    ok = call_messages()[1]
    with_names = [ok.replace(b"\r\nl: 0", f"\r\n{name}: x\r\nl: 0".encode()) for name in names]
    items = (with_names + call_messages()) * 2
    decided = check_all("header names", items)
    assert decided == len(items)


# ---- Serialization: `_sipcore.to_bytes` against `message.python_to_bytes`


def native_module() -> ModuleType:
    assert message.native is not None, "signaling.sip._sipcore is not built: run `make extensions`"
    return message.native


def serialized(serialize: Callable[[SipMessage], bytes], item: SipMessage) -> object:
    """Return the bytes of `item`, or the type of the error that serializing it raised."""
    try:
        return serialize(item)
    # Any error: the two serializers must raise the same type for the same message.
    except Exception as error:
        return type(error).__name__


def configure_serializer(serializer: Callable[[SipMessage], bytes]) -> None:
    native_module().configure(
        SipRequest, SipResponse, Headers, message.MessageInfo, Via, NameAddr, SipUri, CSeq,
        headers_module._SPELLINGS, canonical_name, parse_host, SipSyntaxError, serializer,
    )  # fmt: skip


def assert_same_bytes(name: str, items: list[SipMessage]) -> int:
    """Assert that both serializers write each item alike; return how many C wrote alone."""
    native = native_module()
    handed_back = 0

    def counting(item: SipMessage) -> bytes:
        nonlocal handed_back
        handed_back += 1
        return python_to_bytes(item)

    configure_serializer(counting)
    try:
        for index, item in enumerate(items):
            got = serialized(native.to_bytes, item)
            expected = serialized(python_to_bytes, item)
            assert got == expected, f"{name}: message {index} ({item!r}) serializes differently"
    finally:
        configure_serializer(python_to_bytes)
    return len(items) - handed_back


def parsed_messages(items: list[bytes]) -> list[SipMessage]:
    """Parse each input in Python; keep the messages, and the requests of InvalidRequest errors."""
    messages: list[SipMessage] = []
    for data in items:
        try:
            messages.append(python_parse_datagram(data))
        except InvalidRequest as error:
            messages.append(error.request)
        except SipSyntaxError:
            continue
    return messages


def test_to_bytes_in_use() -> None:
    assert message.to_bytes is native_module().to_bytes


def test_to_bytes_matches_python_on_parsed_corpus() -> None:
    messages = parsed_messages(corpus() + grammar_inputs(grammar_seeds(), INPUTS // 10, SEED + 2))
    assert len(messages) > 1_000
    assert assert_same_bytes("parsed", messages) == len(messages)


# Header names and values for random messages: canonical and odd names, Content-Length
# (which serialization drops and writes again), and UTF-8 text beyond ASCII.
TEXTS = [
    "", " ", "a", "Via", "Content-Length", "content-length", "Content-Length ", "X-Ü", "é",
    "SIP/2.0/UDP h;branch=z9hG4bK1", "<sip:a@b>;tag=1", "\u20ac\U0001f600", "1 INVITE", ":",
    "\r\n", "\x00", "\t", "0", "x" * 300,
]  # fmt: skip


def random_message(rng: random.Random) -> SipMessage:
    items = [(rng.choice(TEXTS), rng.choice(TEXTS)) for _ in range(rng.randrange(12))]
    headers = Headers(items)
    body = bytes(rng.randrange(256) for _ in range(rng.choice((0, 0, 1, 9, 200))))
    if rng.random() < 0.5:
        return SipRequest(rng.choice(TEXTS), rng.choice(TEXTS), headers, body)
    status = rng.choice((0, 100, 200, 699, -1, 10**30, 2**63 - 1, -(2**63)))
    return SipResponse(status, rng.choice(TEXTS), headers, body)


def test_to_bytes_matches_python_on_random_messages() -> None:
    rng = random.Random(SEED + 3)
    items = [random_message(rng) for _ in range(INPUTS // 10)]
    # Only the statuses beyond 64 bits go to the reference.
    assert assert_same_bytes("random", items) >= len(items) // 2


class Status(enum.IntEnum):
    OK = 200


class OtherHeaders(Headers):
    __slots__ = ()


@dataclasses.dataclass(slots=True)
class OtherRequest(SipRequest):
    pass


def odd_messages() -> list[SipMessage]:
    """Messages with fields of types that the C serializer hands to the reference."""

    def headers_with(items: list[Any]) -> Headers:
        headers = Headers()
        headers._items = items
        return headers

    plain = Headers([("Via", "v"), ("To", "t")])
    other_headers = OtherHeaders([("Via", "v")])
    missing_body = SipRequest("BYE", "sip:a@b", plain)
    del missing_body.body
    return [
        SipResponse(Status.OK, "OK", plain),
        SipResponse(True, "OK", plain),
        SipResponse(200, 7, plain),  # type: ignore[arg-type]
        SipResponse(200, "OK", plain, bytearray(b"ab")),  # type: ignore[arg-type]
        SipResponse(200, "OK", plain, memoryview(b"ab")),  # type: ignore[arg-type]
        SipResponse(200, "OK", other_headers),
        SipResponse(200, "bad \udc80", plain),
        SipRequest("BYE", "sip:\udc80@b", plain),
        SipRequest(1, "sip:a@b", plain),  # type: ignore[arg-type]
        SipRequest("BYE", "sip:a@b", plain, "text"),  # type: ignore[arg-type]
        SipRequest("BYE", "sip:a@b", None),  # type: ignore[arg-type]
        OtherRequest("BYE", "sip:a@b", plain),
        missing_body,
        SipRequest("BYE", "sip:a@b", headers_with([("Via", 5)])),
        SipRequest("BYE", "sip:a@b", headers_with([["Via", "v"]])),
        SipRequest("BYE", "sip:a@b", headers_with([("Via", "v", "w")])),
        SipRequest("BYE", "sip:a@b", headers_with([("Via", "\ud800")])),
        SipRequest("BYE", "sip:a@b", headers_with((("Via", "v"),))),  # type: ignore[arg-type]
        SipRequest("BYE", "sip:a@b", headers_with([(Status.OK, "v")])),
    ]


def test_to_bytes_matches_python_on_odd_fields() -> None:
    assert assert_same_bytes("odd", odd_messages()) == 0


def test_to_bytes_writes_call_messages() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("Content-Length", "99")])
    request = SipRequest("BYE", "sip:a@b", headers)
    response = SipResponse(200, "OK", Headers([("Call-ID", "c\u00e9")]), b"v=0\r\n")

    assert native_module().to_bytes(request) == (
        b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"
    )
    assert native_module().to_bytes(response) == (
        b"SIP/2.0 200 OK\r\nCall-ID: c\xc3\xa9\r\nContent-Length: 5\r\n\r\nv=0\r\n"
    )


def test_to_bytes_rejects_other_objects() -> None:
    native = native_module()
    with pytest.raises(AttributeError):
        native.to_bytes("SIP/2.0 200 OK")
    with pytest.raises(AttributeError):
        python_to_bytes("SIP/2.0 200 OK")  # type: ignore[arg-type]


# ---- Header names: `_sipcore.canonical_items` against `headers.python_canonical_items`


def random_items(rng: random.Random) -> list[tuple[str, str]]:
    names = [*NAMES, "", "X-\u00dc", "CALL-ID", "call-id", "I", "Www-Authenticate", "x-custom"]
    items = []
    for _ in range(rng.randrange(10)):
        name = rng.choice(names)
        if rng.random() < 0.3:
            name = "".join(char.upper() if rng.random() < 0.5 else char for char in name)
        items.append((name, rng.choice(TEXTS)))
    return items


def test_canonical_items_matches_python() -> None:
    native = native_module()
    rng = random.Random(SEED + 4)
    for index in range(INPUTS // 10):
        items = random_items(rng)
        got = native.canonical_items(items, headers_module._SPELLINGS, canonical_name)
        expected = python_canonical_items(items, headers_module._SPELLINGS, canonical_name)
        assert got == expected, f"items {index}: {items!r}"
        assert all(type(item) is tuple for item in got)
        assert got is not items


def test_canonical_items_hands_back_odd_items() -> None:
    native = native_module()
    spellings = headers_module._SPELLINGS
    odd: list[Any] = [
        [["Via", "v"]],
        [("Via", "v", "w")],
        [("Via",)],
        [(b"Via", "v")],
        [("Via", "v"), 5],
        iter([("Via", "v")]),
        {"Via": "v"},
    ]
    for items in odd:
        assert native.canonical_items(items, spellings, canonical_name) is None, repr(items)
    assert native.canonical_items((("v", "x"),), spellings, canonical_name) == [("Via", "x")]


def test_canonical_items_passes_on_errors() -> None:
    native = native_module()

    def failing(name: str) -> str:
        raise KeyError(name)

    with pytest.raises(KeyError):
        native.canonical_items([("X-Never-Seen-Before", "v")], {}, failing)
    with pytest.raises(TypeError):
        native.canonical_items([("Via", "v")], [], canonical_name)


def test_headers_keep_items_of_every_shape() -> None:
    assert list(Headers([["v", "x"]])) == [("Via", "x")]  # type: ignore[list-item]
    assert list(Headers(iter([("f", "y")]))) == [("From", "y")]  # type: ignore[arg-type]
    assert list(Headers((("t", "z"),))) == [("To", "z")]  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Headers([("Via", "v", "w")])  # type: ignore[list-item]


# ---- Responses: `_sipcore.build_response` against `message.python_build_response`

RESPONSE_ARGUMENTS: list[tuple[Any, ...]] = [
    # status, reason, to_tag, headers, body, content_type
    (100, "Trying", "t1", [("Server", "VoxGate")], b"", None),
    (180, "Ringing", "t1", None, b"", None),
    (183, "Session Progress", "t1", [("Contact", "<sip:h>")], b"", "application/sdp"),
    (200, "OK", "t\u00e9", [("Contact", "<sip:h>"), ("content-type", "x/y")], b"v=0", "a/sdp"),
    (200, "OK", "", [], b"v=0", ""),
    (101, "Early", "t1", [("m", "<sip:h>"), ("X-Rarely-Seen", "1")], b"", "a/sdp"),
    (486, "", None, [("Retry-After", "5"), ("Via", "extra")], b"x", None),
    (10**30, "Huge", "t1", None, b"", None),
    (-(10**30), "Negative", "t1", None, b"", None),
    (True, "Bool", "t1", None, b"", None),
    (200, "OK", "t1", (("Server", "x"),), b"", None),
    (200, "OK", "t1", [["Server", "x"]], b"", None),
    (200, "OK", "t1", [("Server", "x", "y")], b"", None),
    (200, "OK", "t1", [(1, "x")], b"", None),
    (200, "OK", 5, None, b"", None),
    (200, "OK", "t1", None, bytearray(b"ab"), "a/b"),
    (200, "OK", "t1", None, b"ab", 7),
    (200, None, "t1", None, b"", None),
]


def response_verdict(build: Callable[..., SipResponse | None], *arguments: Any) -> object:
    try:
        return snapshot(build(*arguments))
    # Any error: the two builders must raise the same type for the same request.
    except Exception as error:
        return type(error).__name__


def python_response(request: SipRequest, *arguments: Any) -> SipResponse:
    status, reason, to_tag, extra, body, content_type = arguments
    return python_build_response(
        request,
        status,
        reason,
        to_tag=to_tag,
        headers=extra,
        body=body,
        content_type=content_type,
    )


def test_build_response_in_use() -> None:
    request = python_parse_datagram(call_messages()[0])
    assert isinstance(request, SipRequest)
    assert native_module().build_response(request, 200, "OK", "t", None, b"", None) is not None


def test_build_response_matches_python() -> None:
    native = native_module()
    requests = [
        item
        for item in parsed_messages(corpus() + grammar_inputs(grammar_seeds(), 3_000, SEED + 5))
        if isinstance(item, SipRequest)
    ]
    requests.append(SipRequest("BYE", "sip:a@b", Headers([("Via", "v"), ("To", "t")])))
    assert len(requests) > 500
    decided = 0
    for index, request in enumerate(requests):
        for arguments in RESPONSE_ARGUMENTS:
            # The index that by_key builds is part of the response compared, so build it first.
            request.headers.by_key()
            expected = response_verdict(python_response, request, *arguments)
            # build_response passes the C builder the final reason phrase.
            status, reason, *rest = arguments
            reason = reason or REASON_PHRASES.get(status, "Unknown")
            got = native.build_response(request, status, reason, *rest)
            if got is None:
                continue
            decided += 1
            assert snapshot(got) == expected, f"request {index} ({request!r}), {arguments!r}"
    # Eight rows of RESPONSE_ARGUMENTS have only types that the C builder takes and
    # canonical header names. Two more have names that it takes only once they are in
    # the spelling cache, which the random tests above may have filled.
    validated = sum(request.info is not None for request in requests)
    assert validated > 200
    assert decided >= validated * 8


def test_spelling_cache_has_canonical_names() -> None:
    for name in ("Via", "Contact", "Server", "Retry-After", "Content-Type", "WWW-Authenticate"):
        assert headers_module._SPELLINGS[name] == name
        assert canonical_name(name) == name
