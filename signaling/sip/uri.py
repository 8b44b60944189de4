"""SIP and SIPS URIs (RFC 3261 §19.1, §25.1) and the generic absolute-URI check.

Parsing keeps escaped octets as they arrive, so `SipUri.user` is the raw
user part; `InboundCall` unescapes it for the application. The comparison
rules of §19.1.4 are not implemented because the UAS never compares URIs.

`signaling/sip/_sipcore.c` repeats these checks for the fast path of
`parse_datagram`. A change here needs the same change there, and
`tests/fuzz/test_sipcore.py` compares the two.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field

from signaling.sip.errors import SipSyntaxError

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?"
)
_IPV4_RE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
# user = 1*( unreserved / escaped / user-unreserved ), §25.1
_USER_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")
_PASSWORD_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*")
_PARAM_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|%[0-9A-Fa-f]{2})+")
_HEADER_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|%[0-9A-Fa-f]{2})*")
# Generic absolute URI (RFC 3986 characters, without fragments).
_OPAQUE_RE = re.compile(r"[A-Za-z0-9\-_.!~*'();/?:@&=+$,%\[\]]+")

DEFAULT_PORTS = {"sip": 5060, "sips": 5061}


@dataclass(slots=True)
class SipUri:
    """A parsed sip: or sips: URI.

    `params` maps lower-cased parameter names to values (None for a flag
    parameter); `headers` keeps the `?name=value` part, still escaped.
    """

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def host_is_ipv6(self) -> bool:
        return self.host.startswith("[")

    @property
    def bare_host(self) -> str:
        """The host without IPv6 brackets, as socket calls want it."""
        return self.host[1:-1] if self.host_is_ipv6 else self.host

    @property
    def transport(self) -> str:
        value = self.params.get("transport")
        return (value or "udp").lower()

    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.scheme, 5060)

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += [":", self.password]
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts += [":", str(self.port)]
        for name, value in self.params.items():
            parts += [";", name] if value is None else [";", name, "=", value]
        if self.headers:
            parts.append("?" + "&".join(f"{name}={value}" for name, value in self.headers))
        return "".join(parts)


def split_scheme(text: str) -> tuple[str, str]:
    """Split an absolute URI into its lower-cased scheme and the rest."""
    scheme, sep, rest = text.partition(":")
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        raise SipSyntaxError("invalid URI: missing or invalid scheme")
    return scheme.lower(), rest


@functools.lru_cache(maxsize=1024)
def check_absolute_uri(text: str) -> str:
    """Validate a URI of any scheme (absoluteURI of §25.1) and return its scheme.

    Cached like `_sip_uri_parts`: a pure function of `text` that raises for
    an invalid URI, which is not cached.
    """
    scheme, rest = split_scheme(text)
    if not rest or not _OPAQUE_RE.fullmatch(rest):
        raise SipSyntaxError(f"invalid {scheme}: URI: bad characters or empty")
    return scheme


@functools.lru_cache(maxsize=1024)
def parse_host(text: str) -> str:
    """Validate a host: hostname, IPv4 address or bracketed IPv6 reference.

    Valid hosts are cached, because each request names the same few hosts
    in several headers, and one IPv4 check took about 4 µs.
    """
    if text.startswith("["):
        if not text.endswith("]"):
            raise SipSyntaxError("invalid IPv6 reference: missing ']'")
        try:
            ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise SipSyntaxError("invalid IPv6 reference") from None
        return text
    if _IPV4_RE.fullmatch(text):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            raise SipSyntaxError("invalid IPv4 address") from None
        return text
    if not _HOSTNAME_RE.fullmatch(text):
        raise SipSyntaxError(f"invalid host {_clip(text)!r}")
    return text


def parse_hostport(text: str) -> tuple[str, int | None]:
    """Split `host[:port]` with IPv6 references in brackets (§25.1 hostport)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipSyntaxError("invalid IPv6 reference: missing ']'")
        host, rest = text[: end + 1], text[end + 1 :]
    else:
        host, colon, port_text = text.partition(":")
        rest = colon + port_text
    port: int | None = None
    if rest:
        if not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6:
            raise SipSyntaxError("invalid port in host:port")
        port = int(rest[1:])
        if not 0 < port < 65536:
            raise SipSyntaxError(f"port {port} out of range 1-65535")
    return parse_host(host), port


_UriParts = tuple[
    str, str, str | None, str | None, int | None,
    tuple[tuple[str, str | None], ...], tuple[tuple[str, str], ...],
]  # fmt: skip


def parse_sip_uri(text: str) -> SipUri:
    """Parse a sip: or sips: URI; raise `SipSyntaxError` naming the bad part."""
    scheme, host, user, password, port, params, headers = _sip_uri_parts(text)
    return SipUri(scheme, host, user, password, port, dict(params), list(headers))


@functools.lru_cache(maxsize=1024)
def _sip_uri_parts(text: str) -> _UriParts:
    """Check and split a SIP URI into immutable parts.

    It is a pure function of `text`, cached because a peer names the same
    few URIs in every message: the Contact, the Request-URI, and the URIs of
    From and To. An invalid URI raises and is never cached. `parse_sip_uri`
    builds a new `SipUri` from the parts, so callers may change it.
    """
    scheme, rest = split_scheme(text)
    if scheme not in ("sip", "sips"):
        raise SipSyntaxError(f"not a SIP URI: scheme {scheme!r}")
    user = password = None
    # The user part may contain '?' and ';' (user-unreserved), but '@' appears
    # nowhere else in a SIP URI, so the first '@' ends the userinfo.
    if "@" in rest:
        userinfo, _, rest = rest.partition("@")
        user, has_password, password_text = userinfo.partition(":")
        if not _USER_RE.fullmatch(user):
            raise SipSyntaxError("invalid user part in SIP URI")
        if has_password:
            if not _PASSWORD_RE.fullmatch(password_text):
                raise SipSyntaxError("invalid password part in SIP URI")
            password = password_text
    rest, _, header_text = rest.partition("?")
    hostport, *param_texts = rest.split(";")
    host, port = parse_hostport(hostport)
    params: dict[str, str | None] = {}
    for param in param_texts:
        name, has_value, value = param.partition("=")
        if not _PARAM_RE.fullmatch(name) or (has_value and not _PARAM_RE.fullmatch(value)):
            raise SipSyntaxError(f"invalid URI parameter {_clip(name)!r}")
        params[name.lower()] = value if has_value else None
    headers: list[tuple[str, str]] = []
    if header_text:
        for item in header_text.split("&"):
            name, has_value, value = item.partition("=")
            if not name or not has_value or not _HEADER_RE.fullmatch(name + value):
                raise SipSyntaxError(f"invalid URI header {_clip(name)!r}")
            headers.append((name, value))
    return scheme, host, user, password, port, tuple(params.items()), tuple(headers)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
