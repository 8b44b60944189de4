"""The check of an agent's transfer target: a dialable number or a plain SIP URI."""

from __future__ import annotations

import pytest

from signaling.webrtc.protocol import ErrorCode
from voxgate.transfer import TransferError, check_number_target


@pytest.mark.parametrize(
    "target",
    [
        "2000",
        "+15550100",
        "*72#",
        "sip:2000@127.0.0.1:5070",
        "sips:alice@pbx.example.com;transport=tls",
    ],
)
def test_valid_targets_pass(target: str) -> None:
    assert check_number_target(target) == target


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("12ab", "must be a SIP URI or a number"),
        ("++1", "must be a SIP URI or a number"),
        ("1" * 33, "at most 32"),
        ("sip:@", "not a valid SIP URI"),
        ("sip:127.0.0.1", "needs a user part"),
        ("sip:bob@127.0.0.1?Replaces=abc%40host", "must not carry URI headers"),
        ("sip:bob@999.1.1.1", "not a valid SIP URI"),
    ],
)
def test_invalid_target_names_field(target: str, expected: str) -> None:
    with pytest.raises(TransferError) as raised:
        check_number_target(target)
    assert raised.value.field == "target"
    assert raised.value.code is ErrorCode.BAD_MESSAGE
    assert expected in raised.value.message
    assert "'target'" in raised.value.message


def test_allow_list_rejects_other_targets() -> None:
    allow = ("sip:*@pbx.example.com", "+1555*")
    assert check_number_target("sip:2000@pbx.example.com", allow) == "sip:2000@pbx.example.com"
    assert check_number_target("+15550100", allow) == "+15550100"
    for target in ("sip:2000@evil.example.net", "+4420", "2000"):
        with pytest.raises(TransferError) as raised:
            check_number_target(target, allow)
        assert raised.value.code is ErrorCode.FORBIDDEN
        assert raised.value.field == "target"
        assert "allow-list" in raised.value.message


def test_empty_allow_list_rejects_all() -> None:
    with pytest.raises(TransferError) as raised:
        check_number_target("2000", ())
    assert raised.value.code is ErrorCode.FORBIDDEN
