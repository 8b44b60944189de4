"""Bytes to SIP messages: datagram parsing, stream framing, and validation.

Parsing has two stages. Framing splits the start line and header fields and
cuts the body by Content-Length (RFC 3261 §7.5, §18.3). Validation then
checks the headers that every request or response needs (§8.1.1, §8.2) and
fills `MessageInfo`. A request that fails validation is still returned inside
the error (`InvalidRequest.request`), so the UAS can copy its Via, From, To,
Call-ID and CSeq into the 400 it sends back (§8.2.6.2).

Every size read from the network is bounded by `Limits`, and each limit
names itself in the error.

`parse_datagram` first tries the C extension `signaling.sip._sipcore`
(loaded by `message.py`), which decides the common, well-formed datagram
and returns the same message as `python_parse_datagram`. Every other
datagram, and every one that fails a check, goes to
`python_parse_datagram`, the reference, which also raises the errors.
Without the extension everything runs in Python, and a warning at import
says so. `StreamParser` (TCP and TLS) always runs in Python. A change to
the checks of the datagram path needs the same change in the C
file, and `tests/fuzz/test_sipcore.py` compares the two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType

from signaling.sip.errors import FramingError, SipSyntaxError
from signaling.sip.headers import (
    SINGLE_HEADERS,
    TOKEN_RE,
    Headers,
    NameAddr,
    Via,
    canonical_name,
    check_call_id,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from signaling.sip.message import MessageInfo, SipMessage, SipRequest, SipResponse
from signaling.sip.message import native as message_native
from signaling.sip.uri import check_absolute_uri, parse_sip_uri


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds on what the parser accepts from the network."""

    max_message_bytes: int = 65_535
    max_header_bytes: int = 16_384
    max_line_bytes: int = 4_096
    max_headers: int = 100
    max_body_bytes: int = 32_768


DEFAULT_LIMITS = Limits()

_STATUS_LINE_RE = re.compile(r"SIP/(\d+\.\d+) (\d{3})(?: (.*))?")
_VERSION_RE = re.compile(r"SIP/\d+\.\d+")
_HEADER_NAME_RE = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*:")
# One header line: its name at the line's start, and the rest up to the line end
# (CR included, which the caller strips with the other surrounding whitespace).
_HEADER_LINE_RE = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*:(.*)$", re.MULTILINE)


class InvalidRequest(SipSyntaxError):
    """A request that framed but failed validation; `request` has its raw headers."""

    def __init__(self, reason: str, status: int, request: SipRequest) -> None:
        super().__init__(reason, status)
        self.request = request


def is_keepalive(data: bytes) -> bool:
    """True for a CRLF keep-alive (RFC 5626 §3.5.1) or an empty datagram."""
    return not data.strip(b"\r\n")


native: ModuleType | None = message_native
"""The C fast path of `parse_datagram`, or None when it is not built. Tests set it to None."""


def parse_datagram(data: bytes, limits: Limits = DEFAULT_LIMITS) -> SipMessage:
    """Parse and validate one UDP datagram, with the C fast path when it is built.

    The result, and the error for an invalid datagram, are those of
    `python_parse_datagram`.
    """
    if native is not None:
        message: SipMessage | None = native.parse_datagram(data, limits)
        if message is not None:
            return message
    return python_parse_datagram(data, limits)


def python_parse_datagram(data: bytes, limits: Limits = DEFAULT_LIMITS) -> SipMessage:
    """Parse and validate one UDP datagram in Python: the reference of the C fast path.

    Without Content-Length the body is the rest of the datagram. With it, bytes
    beyond the length are discarded, and a length past the end is an error (§18.3).
    """
    if len(data) > limits.max_message_bytes:
        raise SipSyntaxError(
            f"message of {len(data)} bytes exceeds max_message_bytes={limits.max_message_bytes}",
            status=513,
        )
    head, body_start = _split_head(data, limits)
    message = _parse_head(head, limits)
    length = _content_length(message.headers)
    available = len(data) - body_start
    if length is None:
        length = available
    elif length > available:
        _fail(message, f"Content-Length {length} exceeds the {available} body bytes received")
    if length > limits.max_body_bytes:
        _fail(
            message, f"body of {length} bytes exceeds max_body_bytes={limits.max_body_bytes}", 413
        )
    message.body = data[body_start : body_start + length]
    validate(message)
    return message


class StreamParser:
    """Split a TCP or TLS byte stream into messages (§18.3: Content-Length is mandatory).

    `feed` returns complete messages and per-message errors in stream order.
    A `FramingError` is always the last item: the stream cannot be
    resynchronized, the connection must be closed, and later data is ignored.
    An `InvalidRequest` for one message leaves the stream usable.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buffer = bytearray()
        self._pending: SipMessage | None = None
        self._body_length = 0
        self._pending_error: InvalidRequest | None = None
        self.broken = False

    def feed(self, data: bytes) -> list[SipMessage | SipSyntaxError]:
        results: list[SipMessage | SipSyntaxError] = []
        if self.broken:
            return results
        self._buffer += data
        try:
            self._drain(results)
        except FramingError as error:
            self.broken = True
            self._buffer.clear()
            results.append(error)
        return results

    def _drain(self, results: list[SipMessage | SipSyntaxError]) -> None:
        limit = self._limits.max_header_bytes
        while True:
            if self._pending is None and self._pending_error is None:
                while self._buffer.startswith(b"\r\n"):
                    del self._buffer[:2]
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > limit:
                        raise FramingError(f"header section exceeds max_header_bytes={limit}")
                    return
                head = bytes(self._buffer[:end])
                del self._buffer[: end + 4]
                if len(head) > limit:
                    raise FramingError(f"header section exceeds max_header_bytes={limit}")
                self._start_message(head)
            if len(self._buffer) < self._body_length:
                return
            body = bytes(self._buffer[: self._body_length])
            del self._buffer[: self._body_length]
            if self._pending_error is not None:
                results.append(self._pending_error)
                self._pending_error = None
                continue
            message, self._pending = self._pending, None
            assert message is not None
            message.body = body
            try:
                validate(message)
            except SipSyntaxError as error:
                results.append(error)
            else:
                results.append(message)

    def _start_message(self, head: bytes) -> None:
        """Parse a header section and learn the body length, or raise `FramingError`."""
        try:
            message: SipMessage = _parse_head(head, self._limits)
            headers = message.headers
        except InvalidRequest as error:
            # Only the start line is bad: the headers still frame the body.
            message, headers = error.request, error.request.headers
            self._pending_error = error
        except SipSyntaxError as error:
            raise FramingError(error.reason, request=salvage_request(head + b"\r\n\r\n")) from None
        try:
            length = _content_length(headers)
        except SipSyntaxError as error:
            raise FramingError(error.reason, request=_as_request(message)) from None
        if length is None:
            reason = "missing Content-Length on a stream transport"
            raise FramingError(reason, request=_as_request(message))
        if length > self._limits.max_body_bytes:
            reason = f"Content-Length {length} exceeds max_body_bytes={self._limits.max_body_bytes}"
            raise FramingError(reason, status=413, request=_as_request(message))
        if self._pending_error is None:
            self._pending = message
        self._body_length = length


def _as_request(message: SipMessage) -> SipRequest | None:
    return message if isinstance(message, SipRequest) else None


def _split_head(data: bytes, limits: Limits) -> tuple[bytes, int]:
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise SipSyntaxError("missing empty line after the header section")
    if end - start > limits.max_header_bytes:
        raise SipSyntaxError(f"header section exceeds max_header_bytes={limits.max_header_bytes}")
    return data[start:end], end + 4


def _parse_head(head: bytes, limits: Limits) -> SipMessage:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipSyntaxError("header section is not valid UTF-8") from None
    lines = text.split("\r\n")
    if max(map(len, lines)) > limits.max_line_bytes:
        raise SipSyntaxError(f"header line exceeds max_line_bytes={limits.max_line_bytes}")
    # Each CRLF the split removed contains one CR and one LF, so any other CR or LF is bare.
    breaks = len(lines) - 1
    if text.count("\r") != breaks or text.count("\n") != breaks:
        raise SipSyntaxError("bare CR or LF in the header section")
    fields = _simple_fields(text, breaks, limits)
    if fields is None:
        fields = _fields(lines, limits)
    headers = Headers(fields)
    try:
        message = _parse_start_line(lines[0])
    except InvalidRequest as error:
        error.request.headers = headers
        raise
    except SipSyntaxError as error:
        if lines[0].startswith("SIP/"):
            raise
        raise InvalidRequest(error.reason, error.status, SipRequest("?", "", headers)) from None
    message.headers = headers
    return message


def _simple_fields(text: str, header_lines: int, limits: Limits) -> list[tuple[str, str]] | None:
    """Return the header fields of a section whose every line is `name: value`, else None.

    One regex pass replaces the loop of `_fields` for such sections. A
    continuation line or an invalid line makes the count of matches differ
    from the count of lines, and then `_fields` parses the section and
    raises where it should.
    """
    start = text.find("\r\n")
    if start < 0:
        return []
    matches = _HEADER_LINE_RE.findall(text, start + 2)
    if len(matches) != header_lines or len(matches) > limits.max_headers:
        return None
    return [(name, value.strip()) for name, value in matches]


def _fields(lines: list[str], limits: Limits) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipSyntaxError("continuation line before the first header")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        match = _HEADER_NAME_RE.match(line)
        if not match:
            raise SipSyntaxError("invalid header line: expected 'name: value'")
        fields.append((match.group(1), line[match.end() :].strip()))
        if len(fields) > limits.max_headers:
            raise SipSyntaxError(f"more than max_headers={limits.max_headers} header fields")
    return fields


def salvage_request(data: bytes, limits: Limits = DEFAULT_LIMITS) -> SipRequest | None:
    """Recover the headers a 400 response copies from a request that failed to frame.

    Return None for data that does not look like a request or has no Via.
    """
    if data.startswith(b"SIP/"):
        return None
    head = data[: limits.max_header_bytes].split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    headers = Headers()
    for line in head.split("\r\n")[1 : limits.max_headers + 1]:
        match = _HEADER_NAME_RE.match(line)
        if match and len(line) <= limits.max_line_bytes:
            name = canonical_name(match.group(1))
            if name in ("Via", "From", "To", "Call-ID", "CSeq"):
                headers.add(name, line[match.end() :].strip())
    if "Via" not in headers:
        return None
    return SipRequest("?", "", headers)


def _parse_start_line(line: str) -> SipMessage:
    if line.startswith("SIP/"):
        match = _STATUS_LINE_RE.fullmatch(line) or _STATUS_LINE_RE.fullmatch(line.rstrip(" "))
        if not match:
            raise SipSyntaxError("invalid status line")
        if match.group(1) != "2.0":
            raise SipSyntaxError("unsupported SIP version in status line", status=505)
        status = int(match.group(2))
        if not 100 <= status <= 699:
            raise SipSyntaxError(f"status code {status} out of range 100-699")
        return SipResponse(status, match.group(3) or "", Headers())
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipSyntaxError(
            "invalid Request-Line: expected 'METHOD Request-URI SIP/2.0' with single spaces"
        )
    method, uri, version = parts
    if not TOKEN_RE.fullmatch(method):
        raise SipSyntaxError("invalid Request-Line: method is not a token")
    request = SipRequest(method, uri, Headers())
    if version != "SIP/2.0":
        status = 505 if _VERSION_RE.fullmatch(version) else 400
        raise InvalidRequest(f"unsupported SIP version {version!r}", status, request)
    return request


def _content_length(headers: Headers) -> int | None:
    values = headers.raw("Content-Length")
    if not values:
        return None
    if len(values) > 1:
        raise SipSyntaxError("more than one Content-Length header")
    value = values[0]
    if not value.isdigit() or not value.isascii():
        raise SipSyntaxError("invalid Content-Length: not a non-negative integer")
    if len(value) > 10:
        return 1 << 40
    return int(value)


def _fail(message: SipMessage, reason: str, status: int = 400) -> None:
    raise _error_for(message, reason, status)


def _error_for(message: SipMessage, reason: str, status: int = 400) -> SipSyntaxError:
    if isinstance(message, SipRequest):
        return InvalidRequest(reason, status, message)
    return SipSyntaxError(reason, status)


def validate(message: SipMessage) -> None:
    """Check and parse the mandatory headers, filling `message.info`."""
    try:
        if isinstance(message, SipRequest):
            _validate_request(message)
        else:
            message.info = _parse_info(message.headers)
    except InvalidRequest:
        raise
    except SipSyntaxError as error:
        raise _error_for(message, error.reason, error.status) from None


# The headers every request and response must carry (§8.1.1), by lookup key.
_REQUIRED = tuple((name.lower(), name) for name in ("Via", "From", "To", "Call-ID", "CSeq"))
_SINGLE_KEYS = tuple((name.lower(), name) for name in sorted(SINGLE_HEADERS))


def _validate_request(request: SipRequest) -> None:
    table = request.headers.by_key()
    missing = [name for key, name in _REQUIRED if key not in table]
    if missing:
        raise SipSyntaxError(f"missing required header(s): {', '.join(missing)}")
    info = _parse_info(request.headers)
    if info.cseq.method != request.method:
        raise SipSyntaxError("CSeq method does not match the request method")
    scheme = check_absolute_uri(request.uri)
    if scheme in ("sip", "sips"):
        request.request_uri = parse_sip_uri(request.uri)
    elif scheme != "tel":
        raise SipSyntaxError(f"unsupported URI scheme {scheme!r}", status=416)
    request.info = info


def _parse_info(headers: Headers) -> MessageInfo:
    table = headers.by_key()
    for key, name in _SINGLE_KEYS:
        if len(table.get(key, ())) > 1:
            raise SipSyntaxError(f"more than one {name} header")
    for key, name in _REQUIRED:
        if key not in table:
            raise SipSyntaxError(f"missing required header {name}")
    vias: list[Via] = []
    for element in headers.get_list("Via"):
        vias.append(parse_via(element))
    if not vias:
        raise SipSyntaxError("invalid Via: empty")
    from_ = _parse_address(table["from"][0], "From")
    to = _parse_address(table["to"][0], "To")
    call_id = check_call_id(table["call-id"][0])
    cseq = parse_cseq(table["cseq"][0])
    max_forwards: int | None = None
    max_forwards_values = table.get("max-forwards")
    if max_forwards_values is not None:
        max_forwards_text = max_forwards_values[0]
        if not max_forwards_text.isdigit() or not max_forwards_text.isascii():
            raise SipSyntaxError("invalid Max-Forwards: not an integer")
        max_forwards = int(max_forwards_text[-6:]) if len(max_forwards_text) <= 6 else 256
        if max_forwards > 255:
            raise SipSyntaxError("invalid Max-Forwards: greater than 255")
    contact = [_address_element(element, "Contact") for element in headers.get_list("Contact")]
    record_route = [
        _address_element(element, "Record-Route") for element in headers.get_list("Record-Route")
    ]
    return MessageInfo(vias, from_, to, call_id, cseq, max_forwards, contact, record_route)


def _parse_address(value: str, name: str) -> NameAddr:
    try:
        return parse_name_addr(value)
    except SipSyntaxError as error:
        raise SipSyntaxError(f"invalid {name}: {error.reason}", error.status) from None


def _address_element(element: str, name: str) -> NameAddr:
    if name == "Contact" and element == "*":
        return NameAddr("*", None)
    try:
        return parse_name_addr(element)
    except SipSyntaxError as error:
        raise SipSyntaxError(f"invalid {name}: {error.reason}", error.status) from None
