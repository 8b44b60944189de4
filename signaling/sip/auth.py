"""Digest authentication for requests we receive (RFC 3261 §22, RFC 7616, RFC 8760).

The UAS challenges with one `WWW-Authenticate` per algorithm, most preferred
first (SHA-256, then MD5, by default), always with qop=auth. Nonces are
stateless: a timestamp and a random salt with an HMAC over both under a
per-process secret. So any nonce we issued can be checked without storing
it, and it expires after `nonce_lifetime` seconds (then the peer gets
`stale=true`). Nonce counts
are tracked per nonce to reject replays, in a table bounded by
`max_tracked_nonces`.

`Authenticator.check` returns a decision; the UA core turns a rejection into
401 (with fresh challenges) or 403.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from signaling.sip.errors import SipSyntaxError
from signaling.sip.headers import TOKEN_RE, parse_quoted

ALGORITHMS = {
    "SHA-256": hashlib.sha256,
    "MD5": hashlib.md5,
}
MAX_DIGEST_HEADER = 4096


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """One `Digest` Authorization or WWW-Authenticate value, parameters by lower-cased name."""

    scheme: str
    params: dict[str, str]


def parse_digest(value: str) -> DigestCredentials:
    """Parse `Scheme name=value, name="quoted", ...` (RFC 7616 credentials or challenges).

    Raise `SipSyntaxError` for a malformed value, an over-long one, or a
    repeated parameter.
    """
    if len(value) > MAX_DIGEST_HEADER:
        raise SipSyntaxError(f"authentication header longer than {MAX_DIGEST_HEADER} bytes")
    text = value.strip()
    match = TOKEN_RE.match(text)
    if not match:
        raise SipSyntaxError("invalid authentication header: missing scheme")
    scheme = match.group()
    index = match.end()
    params: dict[str, str] = {}
    while index < len(text):
        while index < len(text) and text[index] in " \t,":
            index += 1
        if index >= len(text):
            break
        name_match = TOKEN_RE.match(text, index)
        if not name_match:
            raise SipSyntaxError("invalid authentication header: bad parameter name")
        name = name_match.group().lower()
        index = name_match.end()
        while index < len(text) and text[index] in " \t":
            index += 1
        if index >= len(text) or text[index] != "=":
            raise SipSyntaxError(f"invalid authentication header: '=' missing after {name!r}")
        index += 1
        while index < len(text) and text[index] in " \t":
            index += 1
        if index < len(text) and text[index] == '"':
            param_value, index = parse_quoted(text, index)
        else:
            value_match = re.compile(r"[^\s,]+").match(text, index)
            if not value_match:
                raise SipSyntaxError(f"invalid authentication header: empty value for {name!r}")
            param_value = value_match.group()
            index = value_match.end()
        if name in params:
            raise SipSyntaxError(f"invalid authentication header: repeated {name!r}")
        params[name] = param_value
        while index < len(text) and text[index] in " \t":
            index += 1
        if index < len(text) and text[index] != ",":
            raise SipSyntaxError("invalid authentication header: expected ',' between parameters")
    return DigestCredentials(scheme, params)


_USED_WITHOUT_QOP = 0xFFFFFFFF


def _uri_target(uri: str) -> str:
    """Return the scheme, user, host and port of a SIP URI, without parameters or headers."""
    return re.split(r"[;?]", uri, maxsplit=1)[0].lower()


def digest_response(
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str = "auth",
) -> str:
    """Compute the `response` value for qop=auth (RFC 7616)."""
    hash_function = ALGORITHMS[algorithm]

    def digest(text: str) -> str:
        return hash_function(text.encode()).hexdigest()

    ha1 = digest(f"{username}:{realm}:{password}")
    ha2 = digest(f"{method}:{uri}")
    return digest(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def build_authorization(
    challenge: DigestCredentials,
    method: str,
    uri: str,
    username: str,
    password: str,
    *,
    nc: int,
    cnonce: str,
) -> str:
    """Answer a digest challenge as a client (RFC 7616), with qop=auth when offered.

    A challenge without qop gets the RFC 2069 form, which has no nonce count.
    """
    params = challenge.params
    algorithm = params.get("algorithm", "MD5").upper()
    realm = params.get("realm", "")
    nonce = params.get("nonce", "")
    fields = [
        f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
    ]  # fmt: skip
    qops = [item.strip().lower() for item in params.get("qop", "").split(",")]
    if "auth" in qops:
        nc_text = f"{nc:08x}"
        response = digest_response(
            algorithm, username, realm, password, method, uri, nonce, nc_text, cnonce
        )
        fields += [f'response="{response}"', "qop=auth", f"nc={nc_text}", f'cnonce="{cnonce}"']
    else:
        digest = ALGORITHMS[algorithm]
        ha1 = digest(f"{username}:{realm}:{password}".encode()).hexdigest()
        ha2 = digest(f"{method}:{uri}".encode()).hexdigest()
        fields.append(f'response="{digest(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()}"')
    fields.append(f"algorithm={algorithm}")
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)


@dataclass(slots=True)
class AuthConfig:
    """Access rules for inbound INVITE and REGISTER.

    `users` maps user names to passwords for digest, and `algorithms` lists
    the challenges in order of preference (SHA-256 and MD5; some older
    clients, such as baresip 1.0, give up when the first one is not MD5).
    `trusted_networks` are
    trunk source networks (CIDR strings) let in without digest. With both
    empty, authentication is off and every source is accepted.

    `allow_rfc2069` also accepts responses without qop (RFC 2069, as
    pyVoIP 1.6.8 sends them) and a digest uri that names the same target as
    the Request-URI with other parameters (pyVoIP adds `;transport=UDP`).
    Such a response has no nonce count, so each nonce is accepted once.
    """

    realm: str = "voxgate"
    users: dict[str, str] = field(default_factory=dict)
    algorithms: Sequence[str] = ("SHA-256", "MD5")
    trusted_networks: Sequence[str] = ()
    nonce_lifetime: float = 300.0
    max_tracked_nonces: int = 10_000
    allow_rfc2069: bool = False

    @property
    def enabled(self) -> bool:
        # `UserAgent._on_request` repeats this test inline.
        return bool(self.users or self.trusted_networks)


@dataclass(frozen=True, slots=True)
class AuthDecision:
    """`status` is None when the request may proceed, else 401 or 403."""

    status: int | None
    user: str | None = None
    stale: bool = False
    reason: str = ""


# The decision for a request that may proceed without credentials, shared because it is frozen.
_ALLOWED = AuthDecision(None)


class Authenticator:
    """Checks source networks and digest credentials; has no I/O."""

    def __init__(self, config: AuthConfig) -> None:
        unknown = [name for name in config.algorithms if name not in ALGORITHMS]
        if unknown or not config.algorithms:
            raise ValueError(f"digest algorithms must be among {list(ALGORITHMS)}, not {unknown}")
        self.config = config
        self._secret = secrets.token_bytes(32)
        self._networks = [
            ipaddress.ip_network(item, strict=False) for item in config.trusted_networks
        ]
        self._nonce_counts: OrderedDict[str, int] = OrderedDict()

    def is_trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def new_nonce(self, now: float) -> str:
        """Return `time.salt.mac`: unique per challenge, and checkable without storage."""
        stamp = f"{int(now):x}.{secrets.token_hex(8)}"
        return f"{stamp}.{self._mac(stamp)}"

    def _mac(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def challenges(self, now: float, stale: bool = False) -> list[tuple[str, str]]:
        """Return one WWW-Authenticate header per configured algorithm, most preferred first."""
        nonce = self.new_nonce(now)
        stale_param = ", stale=true" if stale else ""
        return [
            (
                "WWW-Authenticate",
                f'Digest realm="{self.config.realm}", nonce="{nonce}", '
                f'algorithm={algorithm}, qop="auth"{stale_param}',
            )
            for algorithm in self.config.algorithms
        ]

    def check(
        self, method: str, request_uri: str, authorizations: list[str], source_host: str, now: float
    ) -> AuthDecision:
        """Decide whether a request may proceed: trusted source, or valid digest credentials.

        Trusted networks are trunks: they may INVITE without digest, but a
        REGISTER always needs credentials.
        """
        if not self.config.enabled:
            return _ALLOWED
        if method != "REGISTER" and self.is_trusted(source_host):
            return _ALLOWED
        if not self.config.users:
            return AuthDecision(403, reason="source address is not trusted")
        stale = False
        reason = "credentials missing"
        for value in authorizations:
            try:
                credentials = parse_digest(value)
            except SipSyntaxError as error:
                return AuthDecision(401, reason=error.reason)
            if credentials.scheme.lower() != "digest":
                continue
            decision = self._check_digest(method, request_uri, credentials.params, now)
            if decision.status is None:
                return decision
            stale = stale or decision.stale
            reason = decision.reason
        return AuthDecision(401, stale=stale, reason=reason)

    def _check_digest(
        self, method: str, request_uri: str, params: dict[str, str], now: float
    ) -> AuthDecision:
        username = params.get("username", "")
        password = self.config.users.get(username)
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in ALGORITHMS or algorithm not in self.config.algorithms:
            return AuthDecision(401, reason=f"unsupported digest algorithm {algorithm!r}")
        if params.get("realm") != self.config.realm:
            return AuthDecision(401, reason="wrong realm")
        nonce = params.get("nonce", "")
        if not self._nonce_valid(nonce):
            return AuthDecision(401, reason="nonce not issued here")
        if now - int(nonce.split(".", 1)[0], 16) > self.config.nonce_lifetime:
            return AuthDecision(401, stale=True, reason="nonce expired")
        uri = params.get("uri", "")
        legacy = self.config.allow_rfc2069
        if uri != request_uri and not (legacy and _uri_target(uri) == _uri_target(request_uri)):
            # The digest covers `uri`, so a response computed for another URI is a replay risk.
            return AuthDecision(401, reason="digest uri does not match the Request-URI")
        if legacy and "qop" not in params:
            return self._check_rfc2069(algorithm, username, password, method, uri, nonce, params)
        if params.get("qop") != "auth":
            return AuthDecision(401, reason="qop=auth is required")
        nc_text = params.get("nc", "")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", nc_text) or not params.get("cnonce"):
            return AuthDecision(401, reason="invalid nc or cnonce")
        if password is None:
            return AuthDecision(401, reason="unknown user")
        expected = digest_response(
            algorithm,
            username,
            self.config.realm,
            password,
            method,
            params.get("uri", ""),
            nonce,
            nc_text,
            params["cnonce"],
        )
        if not hmac.compare_digest(expected, params.get("response", "").lower()):
            return AuthDecision(401, reason="wrong digest response")
        # NOTE: counts of the oldest nonces are evicted beyond max_tracked_nonces,
        # so a replay of such a nonce passes until the nonce expires.
        count = int(nc_text, 16)
        if count <= self._nonce_counts.get(nonce, 0):
            return AuthDecision(401, stale=True, reason="nonce count replayed")
        self._nonce_counts[nonce] = count
        self._nonce_counts.move_to_end(nonce)
        while len(self._nonce_counts) > self.config.max_tracked_nonces:
            self._nonce_counts.popitem(last=False)
        return AuthDecision(None, user=username)

    def _check_rfc2069(
        self,
        algorithm: str,
        username: str,
        password: str | None,
        method: str,
        uri: str,
        nonce: str,
        params: dict[str, str],
    ) -> AuthDecision:
        """Check a response computed without qop: H(HA1:nonce:HA2), RFC 2069 §2.1.2."""
        if password is None:
            return AuthDecision(401, reason="unknown user")
        if nonce in self._nonce_counts:
            return AuthDecision(401, stale=True, reason="nonce already used without qop")
        hash_function = ALGORITHMS[algorithm]
        ha1 = hash_function(f"{username}:{self.config.realm}:{password}".encode()).hexdigest()
        ha2 = hash_function(f"{method}:{uri}".encode()).hexdigest()
        expected = hash_function(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        if not hmac.compare_digest(expected, params.get("response", "").lower()):
            return AuthDecision(401, reason="wrong digest response")
        self._nonce_counts[nonce] = _USED_WITHOUT_QOP
        while len(self._nonce_counts) > self.config.max_tracked_nonces:
            self._nonce_counts.popitem(last=False)
        return AuthDecision(None, user=username)

    def _nonce_valid(self, nonce: str) -> bool:
        stamp, _, mac = nonce.rpartition(".")
        if not re.fullmatch(r"[0-9a-f]{1,16}\.[0-9a-f]{16}", stamp):
            return False
        return hmac.compare_digest(self._mac(stamp), mac)
