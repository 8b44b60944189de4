"""Digest responses without qop (RFC 2069), accepted only when configured."""

from __future__ import annotations

import hashlib

from signaling.sip.auth import AuthConfig, Authenticator

REQUEST_URI = "sip:127.0.0.1"
DIGEST_URI = "sip:127.0.0.1;transport=UDP"


def legacy_header(authenticator: Authenticator, nonce: str, *, password: str = "secret") -> str:
    """An Authorization header as pyVoIP 1.6.8 builds it: MD5, no qop, uri with transport."""
    realm = authenticator.config.realm
    ha1 = hashlib.md5(f"alice:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{DIGEST_URI}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
    return (
        f'Digest username="alice",realm="{realm}",nonce="{nonce}",'
        f'uri="{DIGEST_URI}",response="{response}",algorithm=MD5'
    )


def make(allow: bool) -> Authenticator:
    return Authenticator(
        AuthConfig(users={"alice": "secret"}, algorithms=("MD5",), allow_rfc2069=allow)
    )


def test_rfc2069_rejected_by_default() -> None:
    authenticator = make(allow=False)
    nonce = authenticator.new_nonce(100.0)
    header = legacy_header(authenticator, nonce)
    decision = authenticator.check("REGISTER", REQUEST_URI, [header], "127.0.0.1", 101.0)
    assert decision.status == 401


def test_rfc2069_accepted_when_allowed() -> None:
    authenticator = make(allow=True)
    nonce = authenticator.new_nonce(100.0)
    header = legacy_header(authenticator, nonce)
    decision = authenticator.check("REGISTER", REQUEST_URI, [header], "127.0.0.1", 101.0)
    assert decision.status is None
    assert decision.user == "alice"


def test_rfc2069_nonce_accepted_once() -> None:
    authenticator = make(allow=True)
    nonce = authenticator.new_nonce(100.0)
    header = legacy_header(authenticator, nonce)
    first = authenticator.check("REGISTER", REQUEST_URI, [header], "127.0.0.1", 101.0)
    replay = authenticator.check("REGISTER", REQUEST_URI, [header], "127.0.0.1", 102.0)
    assert first.status is None
    assert replay.status == 401
    assert replay.stale


def test_rfc2069_wrong_password_rejected() -> None:
    authenticator = make(allow=True)
    nonce = authenticator.new_nonce(100.0)
    header = legacy_header(authenticator, nonce, password="guess")
    decision = authenticator.check("REGISTER", REQUEST_URI, [header], "127.0.0.1", 101.0)
    assert decision.status == 401
    assert decision.reason == "wrong digest response"


def test_rfc2069_other_target_rejected() -> None:
    authenticator = make(allow=True)
    nonce = authenticator.new_nonce(100.0)
    header = legacy_header(authenticator, nonce)
    decision = authenticator.check("REGISTER", "sip:192.0.2.1", [header], "127.0.0.1", 101.0)
    assert decision.status == 401
    assert decision.reason == "digest uri does not match the Request-URI"
