"""The session description model of RFC 8866 and its serializer.

Values keep the text they were parsed from, so that a parsed description
serializes back to the same lines. `to_bytes` writes the fields in the order
RFC 8866 section 5 prescribes, which is also the order the parser expects
(the parser tolerates some reordering, see `parser.parse`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(frozen=True, slots=True)
class Origin:
    """The o= line: who created the session and which version of it this is."""

    username: str
    session_id: str
    session_version: str
    nettype: str
    addrtype: str
    address: str

    def to_value(self) -> str:
        return " ".join(
            (
                self.username,
                self.session_id,
                self.session_version,
                self.nettype,
                self.addrtype,
                self.address,
            )
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """A c= line. `address` keeps any multicast suffix ("/ttl/count")."""

    nettype: str
    addrtype: str
    address: str

    @property
    def host(self) -> str:
        """The address without the multicast TTL and address count."""
        return self.address.split("/", 1)[0]

    def to_value(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Attribute:
    """An a= line: a property attribute (`value` None) or a value attribute."""

    name: str
    value: str | None = None

    def to_value(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


def _attribute_lines(attributes: tuple[Attribute, ...]) -> list[str]:
    """Return the a= lines, with the text of `Attribute.to_value` written in place.

    One list comprehension costs less than a generator step and a method call
    per attribute, and our answer with DTMF has five or six attributes.
    """
    return [f"a={a.name}" if a.value is None else f"a={a.name}:{a.value}" for a in attributes]


@dataclass(frozen=True, slots=True)
class Timing:
    """A t= line with the r= lines that follow it."""

    value: str = "0 0"
    repeats: tuple[str, ...] = ()


class _AttributeAccess:
    """Lookups shared by the session level and media level attribute lists."""

    __slots__ = ()
    attributes: tuple[Attribute, ...]

    def attribute_values(self, name: str) -> list[str]:
        """Return the values of every value attribute called `name`, in order."""
        return [a.value for a in self.attributes if a.name == name and a.value is not None]

    def first_value(self, name: str) -> str | None:
        """Return the value of the first value attribute called `name`, or None."""
        values = self.attribute_values(name)
        return values[0] if values else None

    def has_attribute(self, name: str) -> bool:
        return any(a.name == name for a in self.attributes)

    @property
    def direction(self) -> str | None:
        """The first direction attribute (sendrecv, sendonly, recvonly, inactive) present."""
        for attribute in self.attributes:
            if attribute.value is None and attribute.name in DIRECTIONS:
                return attribute.name
        return None


@dataclass(frozen=True, slots=True)
class MediaDescription(_AttributeAccess):
    """An m= line and the lines of its media section.

    `formats` are strings because only RTP profiles use payload type numbers
    (a data channel section has "webrtc-datachannel"). `port_count` is the
    "/2" of "m=audio 49170/2 RTP/AVP 0", or None when absent.
    """

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    information: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[str, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    @property
    def connection(self) -> Connection | None:
        """The first media-level c= line, or None."""
        return self.connections[0] if self.connections else None

    @property
    def is_rejected(self) -> bool:
        """True for a stream that was rejected or disabled (port 0, RFC 3264 section 6)."""
        return self.port == 0

    def with_attributes(self, attributes: Iterable[Attribute]) -> MediaDescription:
        return replace(self, attributes=tuple(attributes))

    def to_lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        lines = [f"m={' '.join((self.media, port, self.proto, *self.formats))}"]
        if self.information is not None:
            lines.append(f"i={self.information}")
        # The tests for empty tuples skip building a generator for most lines.
        if self.connections:
            lines.extend(f"c={c.to_value()}" for c in self.connections)
        if self.bandwidths:
            lines.extend(f"b={b}" for b in self.bandwidths)
        if self.key is not None:
            lines.append(f"k={self.key}")
        if self.attributes:
            lines += _attribute_lines(self.attributes)
        return lines


@dataclass(frozen=True, slots=True)
class SessionDescription(_AttributeAccess):
    """A whole session description: the session-level lines and the media sections."""

    origin: Origin
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    timings: tuple[Timing, ...] = field(default_factory=lambda: (Timing(),))
    zone: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()

    def media_connection(self, media: MediaDescription) -> Connection | None:
        """Return the c= line that applies to `media`: its own, else the session's."""
        return media.connection or self.connection

    def media_direction(self, media: MediaDescription) -> str:
        """Return the direction of `media`: its own attribute, else the session's, else sendrecv."""
        return media.direction or self.direction or "sendrecv"

    def to_lines(self) -> list[str]:
        lines = [f"v={self.version}", f"o={self.origin.to_value()}", f"s={self.session_name}"]
        if self.information is not None:
            lines.append(f"i={self.information}")
        if self.uri is not None:
            lines.append(f"u={self.uri}")
        # The tests for empty tuples skip building a generator for most lines.
        if self.emails:
            lines.extend(f"e={e}" for e in self.emails)
        if self.phones:
            lines.extend(f"p={p}" for p in self.phones)
        if self.connection is not None:
            lines.append(f"c={self.connection.to_value()}")
        if self.bandwidths:
            lines.extend(f"b={b}" for b in self.bandwidths)
        for timing in self.timings:
            lines.append(f"t={timing.value}")
            if timing.repeats:
                lines.extend(f"r={r}" for r in timing.repeats)
        if self.zone is not None:
            lines.append(f"z={self.zone}")
        if self.key is not None:
            lines.append(f"k={self.key}")
        if self.attributes:
            lines += _attribute_lines(self.attributes)
        for media in self.media:
            lines.extend(media.to_lines())
        return lines

    def to_text(self) -> str:
        """Serialize with CRLF after every line, as RFC 8866 section 5 requires."""
        # `to_lines` always returns the v=, o= and s= lines, so the last line gets its CRLF too.
        return "\r\n".join(self.to_lines()) + "\r\n"

    def to_bytes(self) -> bytes:
        return self.to_text().encode("utf-8")
