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
import random
from pathlib import Path

import pytest

from signaling.sip import parser
from signaling.sip.errors import SipSyntaxError
from signaling.sip.headers import Headers
from signaling.sip.parser import DEFAULT_LIMITS, Limits, python_parse_datagram
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
