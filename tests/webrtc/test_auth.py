"""Session tokens, password hashes and the per-address throttle."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.webrtc.auth import (
    AddressThrottle,
    AuthError,
    TokenSigner,
    hash_password,
    verify_password,
)
from signaling.webrtc.protocol import Role

SECRET = b"s" * 32


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_token_round_trip() -> None:
    signer = TokenSigner(SECRET, 60, FakeClock())
    token, expires_at = signer.issue("alice", Role.AGENT)
    claims = signer.verify(token)
    assert claims.user == "alice"
    assert claims.role is Role.AGENT
    assert claims.expires_at == expires_at


def test_token_rejected_after_expiry() -> None:
    clock = FakeClock()
    signer = TokenSigner(SECRET, 60, clock)
    token, _ = signer.issue("alice", Role.AGENT)
    clock.now += 60
    with pytest.raises(AuthError, match="expired"):
        signer.verify(token)


def test_token_from_other_secret_rejected() -> None:
    other = TokenSigner(b"o" * 32, 60, FakeClock())
    token, _ = other.issue("alice", Role.AGENT)
    with pytest.raises(AuthError, match="signature"):
        TokenSigner(SECRET, 60, FakeClock()).verify(token)


def test_token_with_edited_claims_rejected() -> None:
    signer = TokenSigner(SECRET, 60, FakeClock())
    caller_token, _ = signer.issue("guest", Role.CALLER)
    agent_token, _ = signer.issue("guest", Role.AGENT)
    forged = agent_token.split(".")[0] + "." + caller_token.split(".")[1]
    with pytest.raises(AuthError):
        signer.verify(forged)


@pytest.mark.parametrize("token", ["", ".", "abc", "abc.", ".abc", "a.b.c", "\u00e9.\u00e9"])
def test_malformed_token_rejected(token: str) -> None:
    with pytest.raises(AuthError):
        TokenSigner(SECRET, 60, FakeClock()).verify(token)


def test_short_secret_rejected() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TokenSigner(b"short", 60)


def test_password_hash_verifies_only_its_password() -> None:
    stored = hash_password("correct horse")
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsE", stored)


def test_password_hashes_are_salted() -> None:
    assert hash_password("pw") != hash_password("pw")


@pytest.mark.parametrize(
    "stored", ["", "plain", "scrypt$1$2$3", "scrypt$x$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!$AAAA"]
)
def test_malformed_password_hash_never_verifies(stored: str) -> None:
    assert not verify_password("pw", stored)


def test_throttle_blocks_after_events_then_forgets() -> None:
    throttle = AddressThrottle(max_events=3, window_s=60)
    for second in range(3):
        assert not throttle.blocked("198.51.100.1", second)
        throttle.record("198.51.100.1", second)
    assert throttle.blocked("198.51.100.1", 10)
    assert not throttle.blocked("198.51.100.2", 10)
    assert not throttle.blocked("198.51.100.1", 70)


def test_throttle_memory_is_bounded() -> None:
    throttle = AddressThrottle(max_events=1, window_s=60, max_clients=10)
    for index in range(100):
        throttle.record(f"client-{index}", 0)
    assert not throttle.blocked("client-0", 1)
    assert throttle.blocked("client-99", 1)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_token_gives_claims_or_auth_error(token: str) -> None:
    signer = TokenSigner(SECRET, 60, FakeClock())
    with contextlib.suppress(AuthError):
        claims = signer.verify(token)
        assert claims.user


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=120))
def test_fuzz_signed_garbage_claims_rejected(body: bytes) -> None:
    """Claims that are correctly signed but not a claims object still raise AuthError."""
    signer = TokenSigner(SECRET, 60, FakeClock())
    encoded = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
    token = f"{encoded}.{signer._sign(encoded)}"
    with contextlib.suppress(AuthError):
        signer.verify(token)
