"""A bounded parser for session descriptions (RFC 8866, formerly RFC 4566).

What it checks: the size limits in `SdpLimits`, UTF-8, the "<type>=<value>"
form of every line, the known line types and where each may appear, the
syntax of v=, o=, c= and m=, and the values of a=rtpmap, a=fmtp, a=ptime and
a=maxptime. Other attribute values are kept as text for the caller.

Where it is lenient: LF line ends as well as CRLF, blank lines, trailing
blanks (kept only in s= and i= text), a missing final line end, a missing t=
line, and the session-level lines after v= in any order (RFC 8866 section 5
fixes an order, and some stacks break it). Media-level lines may also come in
any order after m=. Serialization writes the RFC order back, so a body in
that order round-trips byte for byte.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from signaling.sdp.codecs import parse_rtpmap, split_fmtp
from signaling.sdp.errors import SdpError
from signaling.sdp.model import (
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
    Timing,
)

_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?")
_PTIME = re.compile(r"\d{1,5}(?:\.\d{1,3})?")

_SESSION_ONLY = frozenset("vosuepzrt")
_KNOWN = frozenset("vosiuepcbtrzkam")
# Free text keeps its trailing blanks: RFC 8866 section 5.3 recommends "s= ".
_FREE_TEXT = frozenset("si")


@dataclass(frozen=True, slots=True)
class SdpLimits:
    """Bounds on a body read from the network. The defaults fit browser offers
    with audio, video and data channel sections and their ICE candidates."""

    max_body_bytes: int = 65536
    max_lines: int = 2000
    max_media: int = 32


DEFAULT_LIMITS = SdpLimits()


@dataclass(slots=True)
class _MediaBuilder:
    line_number: int
    media: str
    port: int
    port_count: int | None
    proto: str
    formats: tuple[str, ...]
    information: str | None = None
    connections: list[Connection] = field(default_factory=list)
    bandwidths: list[str] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)

    def build(self) -> MediaDescription:
        return MediaDescription(
            media=self.media,
            port=self.port,
            proto=self.proto,
            formats=self.formats,
            port_count=self.port_count,
            information=self.information,
            connections=tuple(self.connections),
            bandwidths=tuple(self.bandwidths),
            key=self.key,
            attributes=tuple(self.attributes),
        )


def parse(body: bytes | str, *, limits: SdpLimits = DEFAULT_LIMITS) -> SessionDescription:
    """Parse a session description.

    Raises SdpError, naming the line and the problem, for a body over the
    limits, one that is not UTF-8, and every syntax error listed in the module
    docstring. No other exception escapes for any input.
    """
    text = _decode(body, limits)
    raw_lines = text.split("\n")
    if raw_lines[-1] == "":
        raw_lines.pop()
    if len(raw_lines) > limits.max_lines:
        raise SdpError(f"session description has more than {limits.max_lines} lines")

    session: dict[str, object] = {}
    session_attributes: list[Attribute] = []
    emails: list[str] = []
    phones: list[str] = []
    bandwidths: list[str] = []
    timings: list[Timing] = []
    media: list[_MediaBuilder] = []
    seen_version = False

    for index, raw in enumerate(raw_lines):
        line_number = index + 1
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line.strip(" \t"):
            continue
        if "\r" in line or "\0" in line:
            raise SdpError("line contains a CR or NUL character", line_number)
        if len(line) < 2 or line[1] != "=":
            raise SdpError("line is not of the form '<type>=<value>'", line_number)
        kind, value = line[0], line[2:]
        if kind not in _FREE_TEXT:
            value = value.rstrip(" \t")
        if kind not in _KNOWN:
            raise SdpError(f"unknown line type '{kind}='", line_number)

        if not seen_version:
            if kind != "v":
                raise SdpError("session description does not start with v=", line_number)
            if value != "0":
                raise SdpError("unsupported SDP version, expected v=0", line_number)
            seen_version = True
            continue

        if kind == "m":
            if len(media) >= limits.max_media:
                raise SdpError(f"more than {limits.max_media} media sections", line_number)
            media.append(_parse_media_line(value, line_number))
            continue

        if media:
            _add_media_line(media[-1], kind, value, line_number)
            continue

        if kind in "osiuczk":
            if kind in session:
                raise SdpError(f"duplicate {kind}= line in the session section", line_number)
            if kind == "o":
                session[kind] = _parse_origin(value, line_number)
            elif kind == "c":
                session[kind] = _parse_connection(value, line_number)
            else:
                session[kind] = value
        elif kind == "v":
            raise SdpError("duplicate v= line", line_number)
        elif kind == "e":
            emails.append(value)
        elif kind == "p":
            phones.append(value)
        elif kind == "b":
            bandwidths.append(value)
        elif kind == "t":
            timings.append(Timing(value))
        elif kind == "r":
            if not timings:
                raise SdpError("r= line without a preceding t= line", line_number)
            last = timings[-1]
            timings[-1] = Timing(last.value, (*last.repeats, value))
        else:
            session_attributes.append(_parse_attribute(value, line_number, in_media=False))

    if not seen_version:
        raise SdpError("session description is empty")
    origin = session.get("o")
    if not isinstance(origin, Origin):
        raise SdpError("missing o= line")
    session_name = session.get("s")
    if not isinstance(session_name, str):
        raise SdpError("missing s= line")
    connection = session.get("c")

    return SessionDescription(
        origin=origin,
        session_name=session_name,
        information=_optional_text(session.get("i")),
        uri=_optional_text(session.get("u")),
        emails=tuple(emails),
        phones=tuple(phones),
        connection=connection if isinstance(connection, Connection) else None,
        bandwidths=tuple(bandwidths),
        timings=tuple(timings),
        zone=_optional_text(session.get("z")),
        key=_optional_text(session.get("k")),
        attributes=tuple(session_attributes),
        media=tuple(builder.build() for builder in media),
    )


def _decode(body: bytes | str, limits: SdpLimits) -> str:
    if isinstance(body, str):
        if len(body) > limits.max_body_bytes:
            raise SdpError(f"session description is larger than {limits.max_body_bytes} bytes")
        return body
    if len(body) > limits.max_body_bytes:
        raise SdpError(f"session description is larger than {limits.max_body_bytes} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_number = body.count(b"\n", 0, exc.start) + 1
        raise SdpError("line is not valid UTF-8", line_number) from None


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _parse_origin(value: str, line_number: int) -> Origin:
    parts = value.split(" ")
    if len(parts) != 6 or not all(parts):
        raise SdpError(
            "invalid o= line, expected '<username> <sess-id> <sess-version> "
            "<nettype> <addrtype> <address>'",
            line_number,
        )
    return Origin(*parts)


def _parse_connection(value: str, line_number: int) -> Connection:
    parts = value.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SdpError("invalid c= line, expected '<nettype> <addrtype> <address>'", line_number)
    nettype, addrtype, address = parts
    if nettype == "IN" and addrtype in ("IP4", "IP6"):
        _check_address(addrtype, address.split("/", 1)[0], line_number)
    return Connection(nettype, addrtype, address)


def _check_address(addrtype: str, host: str, line_number: int) -> None:
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        parsed = None
    if parsed is None:
        if _is_host_name(addrtype, host):
            return
        raise SdpError(f"c= address is not a valid {addrtype} address or host name", line_number)
    if (parsed.version == 4) != (addrtype == "IP4"):
        raise SdpError(f"c= address does not match address type {addrtype}", line_number)


def _is_host_name(addrtype: str, host: str) -> bool:
    """True for a name (RFC 8866 allows an FQDN in c=), not a malformed address literal."""
    if not _HOSTNAME.fullmatch(host):
        return False
    if addrtype == "IP4":
        return not host.replace(".", "").isdigit()
    return ":" not in host


def _parse_media_line(value: str, line_number: int) -> _MediaBuilder:
    parts = value.split(" ")
    if len(parts) < 4 or not all(parts):
        raise SdpError(
            "invalid m= line, expected '<media> <port> <proto> <format> ...'", line_number
        )
    media, port_text, proto, *formats = parts
    if not _TOKEN.fullmatch(media):
        raise SdpError("invalid media type on m= line", line_number)
    port_part, slash, count_part = port_text.partition("/")
    port = _parse_number(port_part, 65535, "m= port", line_number)
    port_count = _parse_number(count_part, 65535, "m= port count", line_number) if slash else None
    if port_count == 0:
        raise SdpError("m= port count is 0", line_number)
    if not all(_TOKEN.fullmatch(p) for p in proto.split("/")):
        raise SdpError("invalid transport protocol on m= line", line_number)
    return _MediaBuilder(line_number, media, port, port_count, proto, tuple(formats))


def _parse_number(text: str, maximum: int, what: str, line_number: int) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > len(str(maximum)):
        raise SdpError(f"{what} is not a number in 0-{maximum}", line_number)
    number = int(text)
    if number > maximum:
        raise SdpError(f"{what} is not a number in 0-{maximum}", line_number)
    return number


def _add_media_line(builder: _MediaBuilder, kind: str, value: str, line_number: int) -> None:
    if kind in _SESSION_ONLY:
        raise SdpError(f"{kind}= line is not allowed in a media section", line_number)
    if kind == "c":
        builder.connections.append(_parse_connection(value, line_number))
    elif kind == "b":
        builder.bandwidths.append(value)
    elif kind == "a":
        builder.attributes.append(_parse_attribute(value, line_number, in_media=True))
    elif kind in "ik":
        if getattr(builder, "information" if kind == "i" else "key") is not None:
            raise SdpError(f"duplicate {kind}= line in a media section", line_number)
        if kind == "i":
            builder.information = value
        else:
            builder.key = value


def _parse_attribute(value: str, line_number: int, *, in_media: bool) -> Attribute:
    name, colon, attribute_value = value.partition(":")
    if not _TOKEN.fullmatch(name):
        raise SdpError("invalid attribute name on a= line", line_number)
    if not colon:
        return Attribute(name)
    if in_media:
        _check_media_attribute(name, attribute_value, line_number)
    return Attribute(name, attribute_value)


def _check_media_attribute(name: str, value: str, line_number: int) -> None:
    try:
        if name == "rtpmap":
            parse_rtpmap(value)
        elif name == "fmtp":
            split_fmtp(value)
    except ValueError as exc:
        raise SdpError(str(exc), line_number) from None
    if name in ("ptime", "maxptime") and (not _PTIME.fullmatch(value) or float(value) <= 0):
        raise SdpError(f"a={name} is not a positive number of milliseconds", line_number)
