"""Check SDP parsing from a known shape against the full parse, on mutated bodies.

`sdp.parse` builds the description of a body whose shape (the text without
its o= value and m= ports) it has parsed before from that earlier one. Each
mutated body is first parsed with other o= values and ports put in, so that
its shape is known, and then must give what the full parse gives: an equal
description, or an SdpError with the same message and line number. An
`SdpLimits` equal to the default but not the default object runs the full
parse. `FUZZ_SEED` and the input index rebuild a failing input.
"""

from __future__ import annotations

import random
from pathlib import Path

from signaling import sdp
from signaling.sdp import parser
from signaling.sdp.parser import _shape_of
from tests.fuzz.mutate import INPUTS, SEED, inputs

DATA = Path(__file__).resolve().parents[1] / "data"
FULL_PARSE_LIMITS = sdp.SdpLimits()

ORIGIN_VALUES = [
    "alice 2890844526 2890844527 IN IP4 192.0.2.10",
    "- 0 0 IN IP6 2001:db8::1",
    "bob 1 1 IN IP4 host.example.com",
    "a b c d e",
    "a b c d e f g",
    "a  b c d e f",
    "a b c d e f ",
    "a b c d e f\t",
    "a b c d e\tf",
    "a b c d e f\r",
    "a b\0 c d e f",
    "",
]
VALID_ORIGIN_VALUES = ORIGIN_VALUES[:3]
PORTS = ["0", "5004", "65535", "00009", "65536", "123456", "", "1/2", "x", "٣٤", "+1", "-1"]

VALID_PORTS = PORTS[:4]


def sdp_corpus() -> list[bytes]:
    paths = [*sorted(DATA.glob("sdp/*.sdp")), *sorted(DATA.glob("webrtc/*.sdp"))]
    assert paths, "no SDP corpus files under tests/data"
    return [path.read_bytes() for path in paths]


def outcome(body: str, limits: sdp.SdpLimits) -> object:
    """Return the parsed description, or the type, message and line number of the error."""
    try:
        return sdp.parse(body, limits=limits)
    except sdp.SdpError as error:
        return type(error), str(error), error.line_number


def with_fields(body: str, origin_values: list[str], ports: list[str], rng: random.Random) -> str:
    """Return `body` with a random o= value and random ports put in, or as is without a shape."""
    shape = _shape_of(body)
    if shape is None:
        return body
    pieces, _origin_value, old_ports = shape
    values = [rng.choice(origin_values), *(rng.choice(ports) for _ in old_ports)]
    return "".join(piece + value for piece, value in zip(pieces, values, strict=False)) + pieces[-1]


def test_known_shape_matches_full_parse() -> None:
    rng = random.Random(SEED)
    count = max(1, INPUTS // 5)
    known = 0
    for index, data in enumerate(inputs(sdp_corpus(), count, SEED)):
        body = data.decode("utf-8", "replace")
        outcome(with_fields(body, VALID_ORIGIN_VALUES, VALID_PORTS, rng), sdp.DEFAULT_LIMITS)
        for candidate in (body, with_fields(body, ORIGIN_VALUES, PORTS, rng)):
            shape = _shape_of(candidate)
            known += shape is not None and shape[0] in parser._SHAPES
            expected = outcome(candidate, FULL_PARSE_LIMITS)
            actual = outcome(candidate, sdp.DEFAULT_LIMITS)
            assert actual == expected, (
                f"input {index} of {count} (FUZZ_SEED={SEED}) parsed from a known shape "
                f"differs from the full parse\nbody: {candidate!r}"
            )
    assert known > count // 4, f"only {known} bodies had a known shape"
