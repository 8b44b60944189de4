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

import functools
import ipaddress
import re
from dataclasses import dataclass, field

from signaling.sdp.codecs import is_number, parse_rtpmap, split_fmtp
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
# A transport protocol is one or more tokens joined by "/" (RFC 8866 section 5.14).
_PROTO = re.compile(rf"{_TOKEN.pattern}(?:/{_TOKEN.pattern})*")

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
    """The lines of one media section, collected until the next m= line.

    `parse` appends most a= lines itself, without calling `add`.
    """

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

    def add(self, kind: str, value: str, line_number: int) -> None:
        if kind in _SESSION_ONLY:
            raise SdpError(f"{kind}= line is not allowed in a media section", line_number)
        if kind == "c":
            try:
                self.connections.append(_checked_connection(value))
            except SdpError as exc:
                raise SdpError(exc.message, line_number) from None
        elif kind == "b":
            self.bandwidths.append(value)
        elif kind == "a":
            try:
                self.attributes.append(_checked_media_attribute(value))
            except SdpError as exc:
                raise SdpError(exc.message, line_number) from None
        elif kind == "i":
            if self.information is not None:
                raise SdpError("duplicate i= line in a media section", line_number)
            self.information = value
        elif kind == "k":
            if self.key is not None:
                raise SdpError("duplicate k= line in a media section", line_number)
            self.key = value

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


@dataclass(slots=True)
class _SessionBuilder:
    """The session-level lines, collected until the first m= line."""

    origin: Origin | None = None
    session_name: str | None = None
    text_fields: dict[str, str] = field(default_factory=dict)
    connection: Connection | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    bandwidths: list[str] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)

    def add(self, kind: str, value: str, line_number: int) -> None:
        if kind == "o":
            if self.origin is not None:
                raise _duplicate_in_session(kind, line_number)
            self.origin = _parse_origin(value, line_number)
        elif kind == "s":
            if self.session_name is not None:
                raise _duplicate_in_session(kind, line_number)
            self.session_name = value
        elif kind == "c":
            if self.connection is not None:
                raise _duplicate_in_session(kind, line_number)
            try:
                self.connection = _checked_connection(value)
            except SdpError as exc:
                raise SdpError(exc.message, line_number) from None
        elif kind == "t":
            self.timings.append(_timing(value))
        elif kind == "a":
            try:
                self.attributes.append(_checked_session_attribute(value))
            except SdpError as exc:
                raise SdpError(exc.message, line_number) from None
        elif kind == "v":
            raise SdpError("duplicate v= line", line_number)
        elif kind in "iuzk":
            if kind in self.text_fields:
                raise _duplicate_in_session(kind, line_number)
            self.text_fields[kind] = value
        elif kind == "e":
            self.emails.append(value)
        elif kind == "p":
            self.phones.append(value)
        elif kind == "b":
            self.bandwidths.append(value)
        else:
            # `parse` passes only known line types other than m=, so this is r=.
            if not self.timings:
                raise SdpError("r= line without a preceding t= line", line_number)
            last = self.timings[-1]
            self.timings[-1] = Timing(last.value, (*last.repeats, value))

    def build(self, media: list[_MediaBuilder]) -> SessionDescription:
        if self.origin is None:
            raise SdpError("missing o= line")
        if self.session_name is None:
            raise SdpError("missing s= line")
        return SessionDescription(
            origin=self.origin,
            session_name=self.session_name,
            information=self.text_fields.get("i"),
            uri=self.text_fields.get("u"),
            emails=tuple(self.emails),
            phones=tuple(self.phones),
            connection=self.connection,
            bandwidths=tuple(self.bandwidths),
            timings=tuple(self.timings),
            zone=self.text_fields.get("z"),
            key=self.text_fields.get("k"),
            attributes=tuple(self.attributes),
            media=tuple(map(_MediaBuilder.build, media)),
        )


def _duplicate_in_session(kind: str, line_number: int) -> SdpError:
    return SdpError(f"duplicate {kind}= line in the session section", line_number)


def parse(body: bytes | str, *, limits: SdpLimits = DEFAULT_LIMITS) -> SessionDescription:
    """Parse a session description.

    Raises SdpError, naming the line and the problem, for a body over the
    limits, one that is not UTF-8, and every syntax error listed in the module
    docstring. No other exception escapes for any input.

    Trunks and phones send the same offer in call after call except for the
    o= line and the media ports. So a body under the default limits is looked
    up by its shape, the text without those fields (see `_shape_of`). For a
    known shape, the description parsed before is copied with the checked o=
    line and ports of this body. Every other body, and every body whose o=
    line or port would fail or take another path of the parser, goes through
    the full parse.
    """
    # No cache by the whole body: only a load generator such as SIPp sends one body in
    # every call, while phones and trunks change the o= line and the port in each.
    text = _decode(body, limits)
    if limits is not DEFAULT_LIMITS or len(text) > _SHAPE_MAX_CHARS:
        return _parse_text(text, limits)
    shape = _shape_of(text)
    if shape is None:
        return _parse_text(text, limits)
    key, origin_value, ports = shape
    known = _SHAPES.get(key)
    if known is not None:
        parsed = _with_fields(known, origin_value, ports)
        return parsed if parsed is not None else _parse_text(text, limits)
    parsed = _parse_text(text, limits)
    if _has_fields(parsed, origin_value, ports):
        if len(_SHAPES) >= _SHAPE_CACHE_SIZE:
            _SHAPES.clear()
        _SHAPES[key] = parsed
    return parsed


def _parse_text(text: str, limits: SdpLimits) -> SessionDescription:
    """Parse decoded text line by line, which `parse` calls when no known shape applies."""
    raw_lines = text.split("\n")
    if raw_lines[-1] == "":
        raw_lines.pop()
    if len(raw_lines) > limits.max_lines:
        raise SdpError(f"session description has more than {limits.max_lines} lines")

    # The loop splits each line into its type and value and appends media-level
    # a= lines itself. Those are most lines of a body, and a cached one costs no Python call.
    session: _SessionBuilder | None = None
    media: list[_MediaBuilder] = []
    current: _MediaBuilder | None = None
    for line_number, raw in enumerate(raw_lines, 1):
        line = raw[:-1] if raw[-1:] == "\r" else raw
        stripped = line.rstrip(" \t")
        if not stripped:
            continue
        if "\r" in line or "\0" in line:
            raise SdpError("line contains a CR or NUL character", line_number)
        if line[1:2] != "=":
            raise SdpError("line is not of the form '<type>=<value>'", line_number)
        kind = line[0]
        if kind not in _KNOWN:
            raise SdpError(f"unknown line type '{kind}='", line_number)
        value = line[2:] if kind in _FREE_TEXT else stripped[2:]

        if kind == "a" and current is not None:
            try:
                current.attributes.append(_checked_media_attribute(value))
            except SdpError as exc:
                raise SdpError(exc.message, line_number) from None
        elif session is None:
            if kind != "v":
                raise SdpError("session description does not start with v=", line_number)
            if value != "0":
                raise SdpError("unsupported SDP version, expected v=0", line_number)
            session = _SessionBuilder()
        elif kind == "m":
            if len(media) >= limits.max_media:
                raise SdpError(f"more than {limits.max_media} media sections", line_number)
            current = _parse_media_line(value, line_number)
            media.append(current)
        elif current is not None:
            current.add(kind, value, line_number)
        # The first o=, s= and c= line and each t= line of the session section
        # are stored here. `add` takes the other lines, including duplicates.
        elif kind == "o" and session.origin is None:
            session.origin = _parse_origin(value, line_number)
        elif kind == "s" and session.session_name is None:
            session.session_name = value
        elif kind == "c" and session.connection is None:
            try:
                session.connection = _checked_connection(value)
            except SdpError as exc:
                raise SdpError(exc.message, line_number) from None
        elif kind == "t":
            session.timings.append(_timing(value))
        else:
            session.add(kind, value, line_number)

    if session is None:
        raise SdpError("session description is empty")
    return session.build(media)


# The shapes of recent bodies and the description parsed for each. Only
# bodies of up to 4096 characters are kept (the offer of bench/sip_path.py has
# about 200), so 256 keys take at most about 1 MB. When the cache is full it is
# emptied, so a peer that changes its offer in every call costs a full parse
# per call and no more memory.
_SHAPE_MAX_CHARS = 4096
_SHAPE_CACHE_SIZE = 256
_SHAPES: dict[tuple[str, ...], SessionDescription] = {}


def _shape_of(text: str) -> tuple[tuple[str, ...], str, list[str]] | None:
    """Split a body into its shape, the value of its first o= line and the port of each m= line.

    The shape is the text between those fields, so two bodies with one shape
    differ only in them. The port is the text between the first and second
    blank after "m=". In a malformed body it may run past the end of the
    line, and then it is no port of digits, which `_has_fields` and
    `_with_fields` reject. Returns None for a body without an o= line, or when
    fewer than two blanks follow the "m=" of an m= line after the o= line.
    """
    origin_start = text.find("\no=")
    if origin_start < 0:
        return None
    origin_start += 3
    origin_end = text.find("\n", origin_start)
    if origin_end < 0:
        origin_end = len(text)
    if text[origin_end - 1] == "\r":
        origin_end -= 1
    pieces = [text[:origin_start]]
    ports: list[str] = []
    position = origin_end
    while (line_start := text.find("\nm=", position)) >= 0:
        port_start = text.find(" ", line_start + 3) + 1
        port_end = text.find(" ", port_start) if port_start else -1
        if port_end < 0:
            return None
        pieces.append(text[position:port_start])
        ports.append(text[port_start:port_end])
        position = port_end
    pieces.append(text[position:])
    return tuple(pieces), text[origin_start:origin_end], ports


def _has_fields(parsed: SessionDescription, origin_value: str, ports: list[str]) -> bool:
    """True when `_shape_of` cut out exactly the o= value and the plain m= ports of `parsed`.

    Only then may a body of the same shape be built from `parsed` by `_with_fields`.
    """
    if parsed.origin.to_value() != origin_value or len(parsed.media) != len(ports):
        return False
    return all(
        media.port_count is None and _is_port(port) and int(port) == media.port
        for media, port in zip(parsed.media, ports, strict=True)
    )


def _with_fields(
    known: SessionDescription, origin_value: str, ports: list[str]
) -> SessionDescription | None:
    """Return `known` with this body's o= line and ports, or None when the full parse must run.

    The full parse of this body differs from that of `known` only in those
    fields, and only when each takes the same path: an o= value that the line
    loop keeps as it is (no CR, NUL or trailing blank) and that splits into
    six fields, and ports of 1-5 ASCII digits up to 65535. Anything else
    returns None, so the full parse raises its own error for it.
    """
    if "\r" in origin_value or "\0" in origin_value or origin_value.endswith("\t"):
        return None
    parts = origin_value.split(" ")
    if len(parts) != 6 or not all(parts):
        return None
    # A plain loop with the checks of `_is_port` written out saves a Python call per body
    # and one per port, against a comprehension that calls `_is_port`.
    media: list[MediaDescription] = []
    for m, port in zip(known.media, ports, strict=True):
        if not (port.isdigit() and port.isascii() and len(port) <= 5):
            return None
        number = int(port)
        if number > 65535:
            return None
        media.append(
            MediaDescription(
                m.media,
                number,
                m.proto,
                m.formats,
                m.port_count,
                m.information,
                m.connections,
                m.bandwidths,
                m.key,
                m.attributes,
            )
        )
    return SessionDescription(
        Origin(*parts),
        known.session_name,
        known.version,
        known.information,
        known.uri,
        known.emails,
        known.phones,
        known.connection,
        known.bandwidths,
        known.timings,
        known.zone,
        known.key,
        known.attributes,
        tuple(media),
    )


def _is_port(text: str) -> bool:
    """True for the port text that `_parse_media_line` reads without raising: 0-65535."""
    return text.isdigit() and text.isascii() and len(text) <= 5 and int(text) <= 65535


def _decode(body: bytes | str, limits: SdpLimits) -> str:
    if isinstance(body, str):
        # A character is at least one byte, so only a short string needs encoding.
        if len(body) > limits.max_body_bytes:
            raise _too_large(limits)
        try:
            encoded = body.encode("utf-8")
        except UnicodeEncodeError as exc:
            line_number = body.count("\n", 0, exc.start) + 1
            raise SdpError("line is not valid UTF-8", line_number) from None
        if len(encoded) > limits.max_body_bytes:
            raise _too_large(limits)
        return body
    if len(body) > limits.max_body_bytes:
        raise _too_large(limits)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_number = body.count(b"\n", 0, exc.start) + 1
        raise SdpError("line is not valid UTF-8", line_number) from None


def _too_large(limits: SdpLimits) -> SdpError:
    return SdpError(f"session description is larger than {limits.max_body_bytes} bytes")


def _parse_origin(value: str, line_number: int) -> Origin:
    parts = value.split(" ")
    if len(parts) != 6 or not all(parts):
        raise SdpError(
            "invalid o= line, expected '<username> <sess-id> <sess-version> "
            "<nettype> <addrtype> <address>'",
            line_number,
        )
    return Origin(*parts)


# A peer sends the same c= and a= lines in call after call, and their checks
# (an ipaddress parse, an rtpmap parse) cost more than the rest of the line.
# So the checked results are cached, keyed by the whole value. They are
# frozen, and a value that fails its check raises each time and is not cached.
_LINE_CACHE_SIZE = 1024


@functools.lru_cache(maxsize=_LINE_CACHE_SIZE)
def _checked_connection(value: str) -> Connection:
    """Return the Connection of a c= value, or raise SdpError without a line number."""
    parts = value.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SdpError("invalid c= line, expected '<nettype> <addrtype> <address>'")
    nettype, addrtype, address = parts
    if nettype == "IN" and addrtype in ("IP4", "IP6"):
        _check_address(addrtype, address.split("/", 1)[0])
    return Connection(nettype, addrtype, address)


@functools.lru_cache(maxsize=64)
def _timing(value: str) -> Timing:
    """Return the Timing of a t= value, shared because nearly every body has "t=0 0"."""
    return Timing(value)


def _check_address(addrtype: str, host: str) -> None:
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        parsed = None
    if parsed is None:
        if _is_host_name(addrtype, host):
            return
        raise SdpError(f"c= address is not a valid {addrtype} address or host name")
    if (parsed.version == 4) != (addrtype == "IP4"):
        raise SdpError(f"c= address does not match address type {addrtype}")


def _is_host_name(addrtype: str, host: str) -> bool:
    """True for a name (RFC 8866 allows an FQDN in c=), not a malformed address literal."""
    if not _HOSTNAME.fullmatch(host):
        return False
    if addrtype == "IP4":
        return not is_number(host.replace(".", ""))
    return ":" not in host


def _parse_media_line(value: str, line_number: int) -> _MediaBuilder:
    parts = value.split(" ")
    if len(parts) < 4 or "" in parts:
        raise SdpError(
            "invalid m= line, expected '<media> <port> <proto> <format> ...'", line_number
        )
    media, port_text, proto, *formats = parts
    if not _TOKEN.fullmatch(media):
        raise SdpError("invalid media type on m= line", line_number)
    port_part, slash, count_part = port_text.partition("/")
    # A valid port skips the call to `_parse_number`, which raises for every other value.
    if port_part.isdigit() and port_part.isascii() and len(port_part) <= 5:
        port = int(port_part)
        if port > 65535:
            _parse_number(port_part, 65535, "m= port", line_number)
    else:
        port = _parse_number(port_part, 65535, "m= port", line_number)
    port_count = _parse_number(count_part, 65535, "m= port count", line_number) if slash else None
    if port_count == 0:
        raise SdpError("m= port count is 0", line_number)
    if not _PROTO.fullmatch(proto):
        raise SdpError("invalid transport protocol on m= line", line_number)
    return _MediaBuilder(media, port, port_count, proto, tuple(formats))


def _parse_number(text: str, maximum: int, field_name: str, line_number: int) -> int:
    if not is_number(text) or len(text) > len(str(maximum)):
        raise SdpError(f"{field_name} is not a number in 0-{maximum}", line_number)
    number = int(text)
    if number > maximum:
        raise SdpError(f"{field_name} is not a number in 0-{maximum}", line_number)
    return number


@functools.lru_cache(maxsize=_LINE_CACHE_SIZE)
def _checked_media_attribute(value: str) -> Attribute:
    """Return the Attribute of a media-level a= value, or raise SdpError without a line number."""
    return _check_attribute(value, in_media=True)


@functools.lru_cache(maxsize=_LINE_CACHE_SIZE)
def _checked_session_attribute(value: str) -> Attribute:
    """Return the Attribute of a session-level a= value, or raise SdpError without a line number."""
    return _check_attribute(value, in_media=False)


def _check_attribute(value: str, *, in_media: bool) -> Attribute:
    name, colon, attribute_value = value.partition(":")
    if not _TOKEN.fullmatch(name):
        raise SdpError("invalid attribute name on a= line")
    if not colon:
        return Attribute(name)
    if in_media:
        _check_media_attribute(name, attribute_value)
    return Attribute(name, attribute_value)


def _check_media_attribute(name: str, value: str) -> None:
    try:
        if name == "rtpmap":
            parse_rtpmap(value)
        elif name == "fmtp":
            split_fmtp(value)
    except ValueError as exc:
        raise SdpError(str(exc)) from None
    if name in ("ptime", "maxptime") and (not _PTIME.fullmatch(value) or float(value) <= 0):
        raise SdpError(f"a={name} is not a positive number of milliseconds")
