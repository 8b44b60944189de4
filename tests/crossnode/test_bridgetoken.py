"""Bridge tokens that nodes sign for each other: valid, forged, expired and malformed ones."""

from __future__ import annotations

import pytest

from voxgate.bridgetoken import BridgeClaim, BridgeTokenError, sign_bridge, verify_bridge

SECRET = b"cluster-secret-for-bridge-token-tests"
NOW = 1_800_000_000.0
CLAIM = BridgeClaim(
    call_id="abc;123@host=x", agent_id="agent 1", node_id="b.1f2e3d", expires=1_800_000_020
)


def test_signed_header_verifies_to_claim() -> None:
    header = sign_bridge(SECRET, CLAIM)
    assert verify_bridge(SECRET, header, NOW, 30) == CLAIM


def test_other_secret_is_rejected() -> None:
    header = sign_bridge(b"another-secret-of-at-least-32-bytes!!", CLAIM)
    with pytest.raises(BridgeTokenError, match="signature"):
        verify_bridge(SECRET, header, NOW, 30)


def test_changed_call_id_is_rejected() -> None:
    header = sign_bridge(SECRET, CLAIM).replace("call=abc", "call=abd")
    with pytest.raises(BridgeTokenError, match="signature"):
        verify_bridge(SECRET, header, NOW, 30)


def test_expired_header_is_rejected() -> None:
    header = sign_bridge(SECRET, CLAIM)
    with pytest.raises(BridgeTokenError, match="expired"):
        verify_bridge(SECRET, header, CLAIM.expires + 1, 30)


def test_far_future_expiry_is_rejected() -> None:
    header = sign_bridge(SECRET, CLAIM)
    with pytest.raises(BridgeTokenError, match="too far ahead"):
        verify_bridge(SECRET, header, NOW - 100, 30)


def test_node_without_secret_rejects_everything() -> None:
    header = sign_bridge(SECRET, CLAIM)
    with pytest.raises(BridgeTokenError, match="no cluster secret"):
        verify_bridge(None, header, NOW, 30)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "v2;call=a;agent=b;node=c;exp=1800000020;sig=00",
        "v1;call=a;agent=b;node=c;exp=1800000020",
        "v1;call=a;agent=b;node=c;exp=soon;sig=00",
        "v1;call=a;call=a;agent=b;node=c;exp=1800000020;sig=00",
        "v1;call=;agent=b;node=c;exp=1800000020;sig=00",
        "v1;call=a;agent=b;node=c;exp=1800000020;sig=00;extra=1",
        "v1;" + "x" * 2000,
    ],
)
def test_malformed_header_is_rejected(header: str) -> None:
    with pytest.raises(BridgeTokenError):
        verify_bridge(SECRET, header, NOW, 30)


def test_short_secret_cannot_sign() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        sign_bridge(b"short", CLAIM)
