"""Header names, the header list, and parsers for the headers the stack reads.

Values are stored unfolded (continuation lines joined with one space) and
stripped. Compact forms (RFC 3261 §7.3.3) become their long names, and known
names get their canonical spelling, so lookups are case-insensitive and
serialization is uniform. Unknown headers keep the name the peer used.

`signaling/sip/_sipcore.c` repeats the parsers of Via, name-addr, CSeq,
Call-ID, parameters and lists for the fast path of `parse_datagram`. A
change here needs the same change there, and `tests/fuzz/test_sipcore.py`
compares the two.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from signaling.sip.errors import SipSyntaxError
from signaling.sip.uri import SipUri, check_absolute_uri, parse_hostport, parse_sip_uri

COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "Min-SE",
        "MIME-Version",
        "Organization",
        "P-Asserted-Identity",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "RAck",
        "Reason",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "Server",
        "Session-Expires",
        "Subject",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    )
}

# Headers whose values may be comma-separated lists (RFC 3261 §7.3.1). The
# authentication headers are absent on purpose: commas separate their parameters.
LIST_HEADERS = frozenset(
    {
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "In-Reply-To",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Require",
        "Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
    }
)

# Headers that may appear at most once in a message (§20; RFC 4475 message multi01).
SINGLE_HEADERS = frozenset(
    {"Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length", "Content-Type"}
)

TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_PARAM_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]:]+")
_CALL_ID_RE = re.compile(
    r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+)?"
)
_LWS_RE = re.compile(r"[ \t]+")
# A quoted-string whose every backslash escapes a character other than CR or LF.
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\[^\r\n])*)"', re.DOTALL)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)

# Header names as received -> canonical names. Peers spell the same few names
# in every message, and the bound keeps a peer that invents names from growing it.
# It starts with the canonical names, so that the names the stack writes itself
# are found even after a peer has filled it, as the C response builder expects.
_SPELLINGS: dict[str, str] = {name: name for name in _CANONICAL.values()}
_MAX_SPELLINGS = 512


def canonical_name(name: str) -> str:
    """Map a header name as received to its long, canonical spelling."""
    known = _SPELLINGS.get(name)
    if known is not None:
        return known
    lower = name.lower()
    if len(lower) == 1 and lower in COMPACT_FORMS:
        canonical = COMPACT_FORMS[lower]
    else:
        canonical = _CANONICAL.get(lower, name)
    if len(_SPELLINGS) < _MAX_SPELLINGS:
        _SPELLINGS[name] = canonical
    return canonical


@functools.lru_cache(maxsize=256)
def _lookup_key(name: str) -> str:
    """Return the lower-case canonical name that `Headers` looks fields up by."""
    return canonical_name(name).lower()


def python_canonical_items(
    items: list[tuple[str, str]],
    spellings: Mapping[str, str],
    canonical: Callable[[str], str],
) -> list[tuple[str, str]]:
    """Return `items` with each name mapped to its canonical spelling.

    This is the reference of `_sipcore.canonical_items`, which `Headers` calls when
    the extension is built. The spellings seen before are looked up without a call to
    `canonical`.
    """
    return [(spellings.get(name) or canonical(name), value) for name, value in items]


_NativeCanonicalItems = Callable[
    [list[tuple[str, str]], dict[str, str], Callable[[str], str]],
    list[tuple[str, str]] | None,
]


def _load_canonical_items() -> _NativeCanonicalItems | None:
    # message.py imports the same extension, configures it, and warns when it is missing.
    try:
        from signaling.sip._sipcore import canonical_items
    except ImportError:
        return None
    return canonical_items


_native_canonical_items = _load_canonical_items()


class Headers:
    """An ordered multi-map of header fields with case-insensitive names.

    Lookups go through an index from lower-case canonical name to values,
    built on the first lookup after a change. A request is looked up about 25
    times while it is parsed, and a scan per lookup cost most of the parse time.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        canonical_items: list[tuple[str, str]] | None = None
        if not items:
            canonical_items = []
        elif _native_canonical_items is not None:
            # It returns None for items other than a list or tuple of (str, value) tuples.
            canonical_items = _native_canonical_items(items, _SPELLINGS, canonical_name)
        if canonical_items is None:
            canonical_items = python_canonical_items(items or [], _SPELLINGS, canonical_name)
        self._items: list[tuple[str, str]] = canonical_items
        self._index: dict[str, tuple[str, ...]] | None = None

    def add(self, name: str, value: str) -> None:
        self._items.append((_SPELLINGS.get(name) or canonical_name(name), value))
        self._index = None

    def set(self, name: str, value: str) -> None:
        """Replace every field named `name` with one field."""
        self.remove(name)
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = _lookup_key(name)
        self._items = [item for item in self._items if item[0].lower() != key]
        self._index = None

    def raw(self, name: str) -> list[str]:
        """Return the values of every field named `name`, unsplit."""
        # `_values` is inlined here and in `get_list` and `__contains__`, because the
        # UA core calls these for every INVITE.
        index: Mapping[str, tuple[str, ...]] | None = self._index
        if index is None:
            index = self.by_key()
        return list(index.get(_lookup_key(name), ()))

    def _values(self, name: str) -> tuple[str, ...]:
        index: Mapping[str, tuple[str, ...]] | None = self._index
        if index is None:
            index = self.by_key()
        return index.get(_lookup_key(name), ())

    def by_key(self) -> Mapping[str, tuple[str, ...]]:
        """Return the values of each header by lower-case canonical name ("call-id")."""
        index = self._index
        if index is None:
            # Tuples, not lists: the collector stops tracking a tuple of strings
            # and then the dict, which matters for messages kept for 32 s by
            # their transactions.
            index = {}
            for item_name, value in self._items:
                key = item_name.lower()
                index[key] = (*index.get(key, ()), value)
            self._index = index
        return index

    def get(self, name: str) -> str | None:
        index: Mapping[str, tuple[str, ...]] | None = self._index
        if index is None:
            index = self.by_key()
        values = index.get(_lookup_key(name))
        return values[0] if values else None

    def get_list(self, name: str) -> list[str]:
        """Return the elements of a list header across all its fields (§7.3.1)."""
        index: Mapping[str, tuple[str, ...]] | None = self._index
        if index is None:
            index = self.by_key()
        elements: list[str] = []
        for value in index.get(_lookup_key(name), ()):
            elements.extend(split_list(value))
        return elements

    def count(self, name: str) -> int:
        return len(self._values(name))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        index: Mapping[str, tuple[str, ...]] | None = self._index
        if index is None:
            index = self.by_key()
        return _lookup_key(name) in index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        headers = Headers()
        headers._items = list(self._items)
        return headers


def split_list(value: str) -> list[str]:
    """Split a header value at commas outside quoted strings and angle brackets."""
    if "," not in value and '"' not in value:
        return [value.strip()]
    elements: list[str] = []
    start = 0
    in_quotes = in_angle = False
    index = 0
    while index < len(value):
        char = value[index]
        if in_quotes:
            if char == "\\":
                index += 1
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
        elif char == "<":
            in_angle = True
        elif char == ">":
            in_angle = False
        elif char == "," and not in_angle:
            elements.append(value[start:index].strip())
            start = index + 1
        index += 1
    if in_quotes:
        raise SipSyntaxError("unbalanced quotes in header value")
    elements.append(value[start:].strip())
    return [element for element in elements if element] if len(elements) > 1 else elements


def parse_quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted-string starting at `text[start] == '"'`; return (content, end index).

    Escapes (quoted-pair, §25.1) are resolved in the returned content.
    """
    match = _QUOTED_RE.match(text, start)
    if match is not None:
        content = match.group(1)
        if "\\" in content:
            content = _QUOTED_PAIR_RE.sub(r"\1", content)
        return content, match.end()
    # Unterminated, or an escape before CR, LF or the end: the loop names the fault.
    chars: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            if index + 1 >= len(text) or text[index + 1] in "\r\n":
                raise SipSyntaxError("invalid escape at end of quoted string")
            chars.append(text[index + 1])
            index += 2
            continue
        if char == '"':
            return "".join(chars), index + 1
        chars.append(char)
        index += 1
    raise SipSyntaxError("unterminated quoted string")


# Parameters without whitespace or quoted strings take one regex pass instead of the loop.
# Each one is ";name" or ";name=value" with a non-empty value, so that
# `_SIMPLE_PARAM_RE.findall` yields (name, "") for a flag and (name, "=value") otherwise.
_SIMPLE_PARAMS_RE = re.compile(r"(?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~\[\]:]+)?)*")
_SIMPLE_PARAM_RE = re.compile(r";([A-Za-z0-9\-.!%*_+`'~]+)(=[A-Za-z0-9\-.!%*_+`'~\[\]:]+)?")


def parse_params(text: str) -> dict[str, str | None]:
    """Parse `;name=value;flag` header parameters (generic-param, §25.1).

    Names are lower-cased; quoted values keep their quotes stripped and escapes
    resolved. Whitespace around ';' and '=' is allowed (SEMI and EQUAL are SWS-padded).
    """
    if not text:
        return {}
    if _SIMPLE_PARAMS_RE.fullmatch(text):
        # Same result as the loop below, which a later duplicate name also overwrites.
        return {
            name.lower(): value[1:] if value else None
            for name, value in _SIMPLE_PARAM_RE.findall(text)
        }
    params: dict[str, str | None] = {}
    index = 0
    length = len(text)
    while index < length:
        index = _skip_ws(text, index)
        if index >= length:
            break
        if text[index] != ";":
            raise SipSyntaxError("invalid header parameters: expected ';'")
        index = _skip_ws(text, index + 1)
        match = TOKEN_RE.match(text, index)
        if not match:
            raise SipSyntaxError("invalid header parameters: empty or invalid parameter name")
        name = match.group().lower()
        index = _skip_ws(text, match.end())
        value: str | None = None
        if index < length and text[index] == "=":
            index = _skip_ws(text, index + 1)
            if index < length and text[index] == '"':
                value, index = parse_quoted(text, index)
            else:
                value_match = _PARAM_VALUE_RE.match(text, index)
                if not value_match:
                    raise SipSyntaxError(f"invalid header parameters: bad value for {name!r}")
                value = value_match.group()
                index = value_match.end()
        params[name] = value
    return params


def _skip_ws(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t":
        index += 1
    return index


@dataclass(slots=True)
class Via:
    """One Via header element (§20.42)."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def rfc3261_branch(self) -> bool:
        """True when the branch carries the magic cookie and something after it (§8.1.1.7)."""
        branch = self.branch
        return branch is not None and branch.startswith("z9hG4bK") and len(branch) > 7

    def __str__(self) -> str:
        parts = [f"SIP/2.0/{self.transport} {self.sent_by}"]
        for name, value in self.params.items():
            parts.append(f";{name}" if value is None else f";{name}={value}")
        return "".join(parts)


_VIA_PROTOCOL_RE = re.compile(r"\s*SIP\s*/\s*(\S+?)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+([^;\s]+)\s*")


def parse_via(value: str) -> Via:
    match = _VIA_PROTOCOL_RE.match(value)
    if not match:
        raise SipSyntaxError("invalid Via: expected 'SIP/2.0/transport host'")
    if match.group(1) != "2.0":
        raise SipSyntaxError("unsupported SIP version in Via", status=505)
    host, port = parse_hostport(match.group(3))
    params = parse_params(value[match.end() :])
    for name in ("received", "branch", "maddr", "ttl"):
        if name in params and not params[name]:
            raise SipSyntaxError(f"invalid Via: empty {name} parameter")
    return Via(match.group(2).upper(), host, port, params)


@dataclass(slots=True)
class NameAddr:
    """A From, To, Contact, Route or Record-Route element (§20.10).

    `uri` is the parsed SIP URI, or None for another scheme (kept in `uri_text`).
    """

    uri_text: str
    uri: SipUri | None
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    bracketed: bool = True

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        text = f"<{self.uri_text}>"
        if self.display_name is not None:
            escaped = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            text = f'"{escaped}" {text}'
        for name, value in self.params.items():
            text += f";{name}" if value is None else f";{name}={value}"
        return text


_DISPLAY_TOKENS_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*")


def parse_name_addr(value: str, *, require_sip: bool = False) -> NameAddr:
    """Parse `[display-name] <URI> *(;param)` or `addr-spec *(;param)`.

    In the addr-spec form, parameters after the URI belong to the header
    (§20.10), and a URI containing ',', ';' or '?' needs angle brackets.
    """
    uri_text, display, rest, bracketed, scheme = _split_name_addr(value.strip())
    uri: SipUri | None = None
    if scheme in ("sip", "sips"):
        uri = parse_sip_uri(uri_text)
    elif require_sip:
        raise SipSyntaxError(f"unsupported URI scheme {scheme!r}", status=416)
    params = parse_params(rest)
    return NameAddr(uri_text, uri, display, params, bracketed)


@functools.lru_cache(maxsize=1024)
def _split_name_addr(text: str) -> tuple[str, str | None, str, bool, str]:
    """Split a stripped name-addr into (URI text, display name, parameter text, bracketed, scheme).

    It is a pure function of its text, cached because a peer repeats its
    Contact, and the From and To of a dialog, in every message. A text that
    fails a check raises each time and is not cached.
    """
    display: str | None = None
    index = 0
    if text.startswith('"'):
        display, index = parse_quoted(text, 0)
        index = _skip_ws(text, index)
        if index >= len(text) or text[index] != "<":
            raise SipSyntaxError("invalid name-addr: quoted display name without <URI>")
    elif "<" in text:
        cut = text.index("<")
        tokens = text[:cut].strip()
        if tokens and not _DISPLAY_TOKENS_RE.fullmatch(tokens):
            raise SipSyntaxError("invalid display name: use a quoted string for these characters")
        display = tokens or None
        index = cut
    if index < len(text) and text[index] == "<":
        end = text.find(">", index)
        if end < 0:
            raise SipSyntaxError("invalid name-addr: missing '>'")
        # NOTE: whitespace inside the brackets is invalid (RFC 4475 message badaspec) but
        # tolerated, because the URI itself is unambiguous.
        uri_text = text[index + 1 : end].strip()
        rest = text[end + 1 :]
        bracketed = True
    else:
        uri_text, sep, params_text = text.partition(";")
        rest = sep + params_text
        uri_text = uri_text.strip()
        bracketed = False
        if "?" in uri_text or "," in uri_text:
            raise SipSyntaxError("invalid addr-spec: a URI with '?' or ',' must be in <>")
    if not uri_text:
        raise SipSyntaxError("invalid name-addr: empty URI")
    return uri_text, display, rest, bracketed, check_absolute_uri(uri_text)


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


_CSEQ_RE = re.compile(r"(\d+)\s+([A-Za-z0-9\-.!%*_+`'~]+)")


def parse_cseq(value: str) -> CSeq:
    match = _CSEQ_RE.fullmatch(value.strip())
    if not match:
        raise SipSyntaxError("invalid CSeq: expected 'number method'")
    if len(match.group(1)) > 10 or int(match.group(1)) >= 2**31:
        raise SipSyntaxError("invalid CSeq: sequence number must be less than 2**31")
    return CSeq(int(match.group(1)), match.group(2))


def check_call_id(value: str) -> str:
    if not _CALL_ID_RE.fullmatch(value):
        raise SipSyntaxError("invalid Call-ID")
    return value


def parse_tokens(values: list[str]) -> list[str]:
    """Parse option tags or methods (Require, Supported, Allow ...) as tokens."""
    for item in values:
        if not TOKEN_RE.fullmatch(item):
            raise SipSyntaxError("invalid token list")
    return values


def media_type(value: str) -> str:
    """Return the lower-cased `type/subtype` of a Content-Type or Accept element."""
    return value.split(";", 1)[0].strip().lower()


def normalize_lws(value: str) -> str:
    return _LWS_RE.sub(" ", value).strip()
