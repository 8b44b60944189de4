"""Digest authentication units: nonces, parameters and decisions (no I/O)."""

from __future__ import annotations

import pytest

from signaling.sip.auth import AuthConfig, Authenticator, digest_response, parse_digest
from signaling.sip.errors import SipSyntaxError

URI = "sip:100@127.0.0.1"


def credentials(
    authenticator: Authenticator,
    nonce: str,
    *,
    algorithm: str = "SHA-256",
    uri: str = URI,
    nc: str = "00000001",
    password: str = "secret",
) -> str:
    realm = authenticator.config.realm
    response = digest_response(algorithm, "alice", realm, password, "INVITE", uri, nonce, nc, "cn")
    return (
        f'Digest username="alice", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm}, qop=auth, nc={nc}, cnonce="cn"'
    )


def make(**settings: object) -> Authenticator:
    return Authenticator(AuthConfig(users={"alice": "secret"}, **settings))  # type: ignore[arg-type]


def test_nonces_unique_within_one_second() -> None:
    authenticator = make()

    assert authenticator.new_nonce(100.0) != authenticator.new_nonce(100.0)


def test_valid_credentials_accepted() -> None:
    authenticator = make()
    nonce = authenticator.new_nonce(100.0)

    decision = authenticator.check(
        "INVITE", URI, [credentials(authenticator, nonce)], "10.0.0.1", 101.0
    )

    assert decision.status is None
    assert decision.user == "alice"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"uri": "sip:other@127.0.0.1"}, "Request-URI"),
        ({"password": "wrong"}, "wrong digest response"),
        ({"nc": "1"}, "invalid nc"),
    ],
)
def test_bad_credentials_rejected(change: dict[str, str], reason: str) -> None:
    authenticator = make()
    nonce = authenticator.new_nonce(100.0)
    header = credentials(authenticator, nonce, **change)

    decision = authenticator.check("INVITE", URI, [header], "10.0.0.1", 101.0)

    assert decision.status == 401
    assert reason in decision.reason


def test_tampered_nonce_rejected() -> None:
    authenticator = make()
    nonce = authenticator.new_nonce(100.0)
    forged = "0" + nonce[1:] if nonce[0] != "0" else "1" + nonce[1:]

    decision = authenticator.check("INVITE", URI, [credentials(authenticator, forged)], "h", 101.0)

    assert decision.status == 401
    assert decision.reason == "nonce not issued here"


def test_expired_nonce_is_stale() -> None:
    authenticator = make(nonce_lifetime=60.0)
    nonce = authenticator.new_nonce(100.0)

    decision = authenticator.check("INVITE", URI, [credentials(authenticator, nonce)], "h", 200.0)

    assert decision.status == 401
    assert decision.stale


def test_nonce_count_must_grow() -> None:
    authenticator = make()
    nonce = authenticator.new_nonce(100.0)
    first = credentials(authenticator, nonce, nc="00000002")
    older = credentials(authenticator, nonce, nc="00000001")
    newer = credentials(authenticator, nonce, nc="00000003")

    assert authenticator.check("INVITE", URI, [first], "h", 101.0).status is None
    assert authenticator.check("INVITE", URI, [older], "h", 101.0).status == 401
    assert authenticator.check("INVITE", URI, [newer], "h", 101.0).status is None


def test_algorithm_outside_config_rejected() -> None:
    authenticator = make(algorithms=("SHA-256",))
    nonce = authenticator.new_nonce(100.0)
    header = credentials(authenticator, nonce, algorithm="MD5")

    decision = authenticator.check("INVITE", URI, [header], "h", 101.0)
    challenges = authenticator.challenges(100.0)

    assert decision.status == 401
    assert "unsupported digest algorithm" in decision.reason
    assert len(challenges) == 1
    assert "algorithm=SHA-256" in challenges[0][1]


def test_unknown_algorithm_in_config_raises() -> None:
    with pytest.raises(ValueError, match="SHA-1"):
        make(algorithms=("SHA-1",))


def test_trusted_network_not_for_register() -> None:
    authenticator = make(trusted_networks=["10.0.0.0/8"])

    assert authenticator.check("INVITE", URI, [], "10.1.2.3", 1.0).status is None
    assert authenticator.check("REGISTER", URI, [], "10.1.2.3", 1.0).status == 401
    assert authenticator.check("INVITE", URI, [], "192.0.2.1", 1.0).status == 401


@pytest.mark.parametrize(
    "value",
    ['Digest realm="a", realm="b"', "Digest realm", 'Digest realm="unterminated', "=x", "x" * 5000],
)
def test_parse_digest_rejects_malformed(value: str) -> None:
    with pytest.raises(SipSyntaxError):
        parse_digest(value)
