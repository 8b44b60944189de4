from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ivr.channel import DtmfInput
from media.dtmf_info import parse_info_dtmf

DATA = Path(__file__).parent.parent / "data" / "media"


def split_message(raw: str) -> tuple[str, str]:
    """Return (Content-Type, body) of one SIP message."""
    head, _, body = raw.partition("\r\n\r\n")
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() in ("content-type", "c"):
            return value.strip(), body
    raise AssertionError("message has no Content-Type")


def test_info_body_variants_from_field() -> None:
    case = yaml.safe_load((DATA / "29-sip-info-dtmf-body-variants.yaml").read_text())
    digits = [parse_info_dtmf(*split_message(step["raw"])) for step in case["steps"]]
    assert all(d is not None for d in digits)
    assert "".join(d.digit for d in digits if d is not None) == case["expected"]["digits"]
    assert [d.duration_ms for d in digits if d is not None] == [100, 160, 0, 250]


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/dtmf-relay", "Signal=1\r\nDuration=160\r\n", DtmfInput("1", 160)),
        ("Application/DTMF-Relay; charset=utf-8", "SIGNAL = a\nDURATION = 80", DtmfInput("A", 80)),
        ("application/dtmf-relay", "Signal=10\r\nDuration=100", DtmfInput("*", 100)),
        ("application/dtmf-relay", "Signal=#\r\n", DtmfInput("#", 0)),
        ("application/dtmf", "*", DtmfInput("*", 0)),
        ("application/dtmf", " 7\r\n", DtmfInput("7", 0)),
        ("application/dtmf", b"15", DtmfInput("D", 0)),
    ],
)
def test_info_body_parsed(content_type: str, body: str | bytes, expected: DtmfInput) -> None:
    assert parse_info_dtmf(content_type, body) == expected


@pytest.mark.parametrize("content_type", ["application/sdp", "text/plain", ""])
def test_other_content_types_return_none(content_type: str) -> None:
    assert parse_info_dtmf(content_type, "Signal=1") is None


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/dtmf-relay", "Duration=100", "no Signal"),
        ("application/dtmf-relay", "Signal=Z", "invalid DTMF key"),
        ("application/dtmf-relay", "Signal=1\r\nDuration=abc", "invalid Duration"),
        ("application/dtmf-relay", "garbage", "missing '='"),
        ("application/dtmf", "16", "invalid DTMF key"),
        ("application/dtmf", "", "invalid DTMF key"),
        ("application/dtmf", "x" * 2000, "exceeds"),
    ],
)
def test_malformed_info_body_rejected(content_type: str, body: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_info_dtmf(content_type, body)
