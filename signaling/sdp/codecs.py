"""Codecs as SDP names them, and how a media section maps payload types to codecs.

RFC 3551 section 6 fixes the static audio payload types, which need no
a=rtpmap line. Any other payload type means nothing without an a=rtpmap line
(RFC 8866 section 6.6). G.722 is the known oddity: its RTP clock rate is
8000 although it samples at 16 kHz (RFC 3551 section 4.5.2).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from signaling.sdp.model import Attribute, MediaDescription

TELEPHONE_EVENT = "telephone-event"

# RFC 3551 section 6, table 4: static audio payload types.
STATIC_AUDIO_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
}

FIRST_DYNAMIC_PAYLOAD_TYPE = 96
MAX_PAYLOAD_TYPE = 127

_RTPMAP = re.compile(r"([0-9]{1,3}) +([^\s/]+)/([0-9]{1,9})(?:/([0-9]{1,3}))?")
DTMF_EVENTS = frozenset(range(16))


def is_number(text: str) -> bool:
    """True for a non-empty string of ASCII digits.

    str.isdigit alone also accepts digits such as "²", which int() rejects.
    """
    return text.isascii() and text.isdigit()


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format as SDP describes it.

    `clock_rate` is the RTP clock rate of the a=rtpmap line (8000 for G.722).
    `payload_type` is None for a codec we support on any payload type.
    `fmtp` is the parameter string of the a=fmtp line, if any.
    """

    name: str
    clock_rate: int
    channels: int = 1
    payload_type: int | None = None
    fmtp: str | None = None

    def same_format(self, other: Codec) -> bool:
        """True when both describe one format: name (case-insensitive), clock rate, channels."""
        return (
            self.name.casefold() == other.name.casefold()
            and self.clock_rate == other.clock_rate
            and self.channels == other.channels
        )

    @property
    def is_telephone_event(self) -> bool:
        return self.name.casefold() == TELEPHONE_EVENT

    def rtpmap_value(self, payload_type: int) -> str:
        """Return the value of an a=rtpmap line for this codec on `payload_type`."""
        channels = f"/{self.channels}" if self.channels != 1 else ""
        return f"{payload_type} {self.name}/{self.clock_rate}{channels}"


PCMU = Codec("PCMU", 8000, payload_type=0)
PCMA = Codec("PCMA", 8000, payload_type=8)
G722 = Codec("G722", 8000, payload_type=9)
OPUS = Codec("opus", 48000, 2, fmtp="minptime=10;useinbandfec=1")


def parse_rtpmap(value: str) -> Codec:
    """Parse an a=rtpmap value such as "101 telephone-event/8000" (RFC 8866 section 6.6).

    Raises ValueError naming the problem.
    """
    match = _RTPMAP.fullmatch(value)
    if match is None:
        raise ValueError("invalid a=rtpmap, expected '<payload type> <encoding>/<clock rate>'")
    payload_type = int(match[1])
    if payload_type > MAX_PAYLOAD_TYPE:
        raise ValueError(f"a=rtpmap payload type {payload_type} is outside 0-127")
    clock_rate = int(match[3])
    if clock_rate == 0:
        raise ValueError("a=rtpmap clock rate is 0")
    channels = int(match[4]) if match[4] is not None else 1
    if channels == 0:
        raise ValueError("a=rtpmap channel count is 0")
    return Codec(match[2], clock_rate, channels, payload_type)


def split_fmtp(value: str) -> tuple[str, str]:
    """Split an a=fmtp value into its format and its parameter string.

    Raises ValueError when the format is missing.
    """
    format_, _, parameters = value.partition(" ")
    if not format_:
        raise ValueError("invalid a=fmtp, expected '<format> <parameters>'")
    return format_, parameters.strip()


def payload_type_of(format_: str) -> int | None:
    """Return the RTP payload type a format names, or None when it is not one (0-127)."""
    if not is_number(format_) or len(format_) > 3:
        return None
    payload_type = int(format_)
    return payload_type if payload_type <= MAX_PAYLOAD_TYPE else None


def offered_codecs(media: MediaDescription) -> list[Codec]:
    """Return the codecs of an RTP media section in the order of its m= line.

    Each codec carries its payload type and a=fmtp parameters. A static payload
    type without a=rtpmap takes its RFC 3551 meaning. Formats that name no
    payload type, and dynamic ones without a=rtpmap, are left out because
    their meaning is unknown.
    """
    return list(_offered_codecs(media.media, media.formats, media.attributes))


@functools.lru_cache(maxsize=256)
def _offered_codecs(
    kind: str, formats: tuple[str, ...], attributes: tuple[Attribute, ...]
) -> tuple[Codec, ...]:
    """`offered_codecs` of a section with this kind, formats and attributes.

    It is a pure function of immutable values, cached because a peer offers
    the same formats in every call and answering an offer reads them three times.
    """
    rtpmaps: dict[int, Codec] = {}
    for value in _values(attributes, "rtpmap"):
        try:
            codec = parse_rtpmap(value)
        except ValueError:
            continue
        if codec.payload_type is not None:
            rtpmaps.setdefault(codec.payload_type, codec)

    fmtps: dict[str, str] = {}
    for value in _values(attributes, "fmtp"):
        try:
            format_, parameters = split_fmtp(value)
        except ValueError:
            continue
        fmtps.setdefault(format_, parameters)

    codecs: list[Codec] = []
    seen: set[int] = set()
    for format_ in formats:
        payload_type = payload_type_of(format_)
        if payload_type is None or payload_type in seen:
            continue
        seen.add(payload_type)
        mapped = rtpmaps.get(payload_type)
        static = STATIC_AUDIO_PAYLOAD_TYPES.get(payload_type)
        if mapped is not None:
            codecs.append(replace(mapped, fmtp=fmtps.get(format_)))
        elif static is not None and kind == "audio":
            codecs.append(Codec(*static, payload_type=payload_type, fmtp=fmtps.get(format_)))
    return tuple(codecs)


def _values(attributes: tuple[Attribute, ...], name: str) -> list[str]:
    return [a.value for a in attributes if a.name == name and a.value is not None]


def parse_events(fmtp: str | None) -> frozenset[int] | None:
    """Parse the event list of a telephone-event a=fmtp, such as "0-15,66".

    No fmtp means events 0-15 (RFC 4733). Returns None when the
    list is invalid.
    """
    if fmtp is None or not fmtp.strip():
        return frozenset(range(16))
    events: set[int] = set()
    for item in fmtp.replace(" ", "").split(","):
        low, dash, high = item.partition("-")
        if not is_number(low) or (dash and not is_number(high)):
            return None
        first, last = int(low), int(high) if dash else int(low)
        if first > last or last > 255:
            return None
        events.update(range(first, last + 1))
    return frozenset(events)


def format_events(events: frozenset[int]) -> str:
    """Format events as RFC 4733 ranges: {0, ..., 15, 66} becomes "0-15,66"."""
    ranges: list[str] = []
    ordered = sorted(events)
    start = 0
    while start < len(ordered):
        end = start
        while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
            end += 1
        first, last = ordered[start], ordered[end]
        ranges.append(str(first) if first == last else f"{first}-{last}")
        start = end + 1
    return ",".join(ranges)


def find_telephone_event(
    codecs: Sequence[Codec], clock_rate: int, allowed: frozenset[int] = DTMF_EVENTS
) -> Codec | None:
    """Return the first telephone-event at `clock_rate` whose events overlap `allowed`.

    The result carries the common events as its fmtp. Telephone-event runs on
    the RTP clock of the audio codec it goes with (RFC 4733), so one at
    another rate is skipped.
    """
    for codec in codecs:
        if not codec.is_telephone_event or codec.clock_rate != clock_rate:
            continue
        events = parse_events(codec.fmtp)
        if events is None:
            continue
        common = events & allowed
        if common:
            return Codec(TELEPHONE_EVENT, clock_rate, 1, codec.payload_type, format_events(common))
    return None
