"""Session tokens, password hashes and the HTTP login endpoints.

A token is `base64url(claims JSON) "." base64url(HMAC-SHA256(secret, claims))`.
Claims carry the user, the role and an expiry in Unix seconds. A token is
valid only before its expiry and only with the server's secret. Passwords are
stored as scrypt hashes ("scrypt$n$r$p$salt$hash", base64 salt and hash).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from signaling.webrtc.protocol import Role

logger = logging.getLogger("webrtc")

_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_MAX_LOGIN_BODY = 4_096


class AuthError(Exception):
    """A token or credential was rejected; the message is safe to show to the client."""


@dataclass(frozen=True, slots=True)
class Claims:
    user: str
    role: Role
    expires_at: float


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and verifies short-lived session tokens."""

    def __init__(self, secret: bytes, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 32:
            raise ValueError("token secret must be at least 32 bytes")
        self._secret = secret
        self._ttl_s = ttl_s
        self._clock = clock

    def issue(self, user: str, role: Role) -> tuple[str, float]:
        """Return a token for `user` and its expiry time in Unix seconds."""
        expires_at = float(int(self._clock()) + self._ttl_s)
        claims = {"sub": user, "role": role.value, "exp": expires_at, "jti": secrets.token_hex(8)}
        body = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}", expires_at

    def verify(self, token: str) -> Claims:
        """Return the token's claims; raise AuthError if it is malformed, forged or expired."""
        body, dot, signature = token.partition(".")
        if not dot or not body or not signature or not token.isascii():
            raise AuthError("malformed token")
        if not hmac.compare_digest(signature, self._sign(body)):
            raise AuthError("invalid token signature")
        try:
            claims = json.loads(_b64decode(body))
            user = claims["sub"]
            role = Role(claims["role"])
            expires_at = float(claims["exp"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise AuthError("malformed token") from None
        if not isinstance(user, str):
            raise AuthError("malformed token")
        if self._clock() >= expires_at:
            raise AuthError("token expired")
        return Claims(user=user, role=role, expires_at=expires_at)

    def _sign(self, body: str) -> str:
        return _b64encode(hmac.new(self._secret, body.encode("ascii"), hashlib.sha256).digest())


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Hash a password with scrypt for the `users` setting."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return "$".join(
        [
            "scrypt",
            str(_SCRYPT_N),
            str(_SCRYPT_R),
            str(_SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def verify_password(password: str, stored: str) -> bool:
    """Check a password against a hash from `hash_password`; False for any malformed hash."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return False
    if not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=2**27
    )
    return hmac.compare_digest(digest, expected)


class AddressThrottle:
    """Counts events (failed logins, guest tokens) per client address in a sliding window.

    Pure: the caller passes the time. At most `max_clients` addresses are
    remembered, oldest first out, so a flood of addresses cannot grow memory.
    """

    def __init__(
        self, max_events: int = 5, window_s: float = 60.0, max_clients: int = 10_000
    ) -> None:
        self._max_events = max_events
        self._window_s = window_s
        self._max_clients = max_clients
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def blocked(self, client: str, now: float) -> bool:
        times = self._events.get(client)
        if times is None:
            return False
        while times and now - times[0] >= self._window_s:
            times.popleft()
        return len(times) >= self._max_events

    def record(self, client: str, now: float) -> None:
        times = self._events.setdefault(client, deque(maxlen=self._max_events))
        times.append(now)
        self._events.move_to_end(client)
        while len(self._events) > self._max_clients:
            self._events.popitem(last=False)


class LoginHandlers:
    """aiohttp handlers for `POST login` (agents) and `POST guest` (callers)."""

    def __init__(
        self,
        signer: TokenSigner,
        users: Mapping[str, str],
        *,
        guest_callers: bool,
        origin_allowed: Callable[[str | None], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._signer = signer
        self._users = users
        self._guest_callers = guest_callers
        self._origin_allowed = origin_allowed
        self._clock = clock
        self._failed_logins = AddressThrottle(max_events=5, window_s=60.0)
        self._guest_tokens = AddressThrottle(max_events=30, window_s=60.0)

    async def login(self, request: web.Request) -> web.Response:
        """Check a user name and password and return an agent token."""
        self._check_origin(request)
        client = request.remote or "unknown"
        if self._failed_logins.blocked(client, self._clock()):
            logger.debug("login throttled for a client after repeated failures")
            raise web.HTTPTooManyRequests(text="too many failed logins, retry in a minute")
        body = await self._read_json(request)
        user = body.get("user")
        password = body.get("password")
        if not isinstance(user, str) or not isinstance(password, str):
            raise web.HTTPBadRequest(text="fields 'user' and 'password' must be strings")
        stored = self._users.get(user)
        if stored is None or not verify_password(password, stored):
            self._failed_logins.record(client, self._clock())
            logger.info("agent login rejected")
            raise web.HTTPUnauthorized(text="invalid user name or password")
        token, expires_at = self._signer.issue(user, Role.AGENT)
        logger.info("agent login accepted")
        return web.json_response({"token": token, "expires_at": expires_at, "role": "agent"})

    async def guest(self, request: web.Request) -> web.Response:
        """Return a caller token for an anonymous browser caller, if guests are allowed."""
        self._check_origin(request)
        if not self._guest_callers:
            raise web.HTTPForbidden(text="guest calls are disabled")
        client = request.remote or "unknown"
        if self._guest_tokens.blocked(client, self._clock()):
            logger.debug("guest tokens throttled for a client")
            raise web.HTTPTooManyRequests(text="too many guest sessions, retry in a minute")
        self._guest_tokens.record(client, self._clock())
        token, expires_at = self._signer.issue(f"guest-{secrets.token_hex(6)}", Role.CALLER)
        return web.json_response({"token": token, "expires_at": expires_at, "role": "caller"})

    def _check_origin(self, request: web.Request) -> None:
        if not self._origin_allowed(request.headers.get("Origin")):
            raise web.HTTPForbidden(text="origin not allowed")

    async def _read_json(self, request: web.Request) -> dict[str, object]:
        if request.content_length is not None and request.content_length > _MAX_LOGIN_BODY:
            raise web.HTTPRequestEntityTooLarge(
                max_size=_MAX_LOGIN_BODY, actual_size=request.content_length
            )
        raw = await request.content.read(_MAX_LOGIN_BODY + 1)
        if len(raw) > _MAX_LOGIN_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=_MAX_LOGIN_BODY, actual_size=len(raw))
        try:
            body = json.loads(raw)
        except ValueError:
            raise web.HTTPBadRequest(text="body must be a JSON object") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return body
