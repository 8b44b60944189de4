"""SIP requests and responses: the wire-form dataclasses and their serialization.

A parsed request also carries the headers the stack needs in parsed form
(`MessageInfo`), filled in by `signaling.sip.parser`. Messages we build
ourselves go through `build_response` and `build_request` and are serialized
with `to_bytes`, which always writes Content-Length.

This module loads the C extension `signaling.sip._sipcore` and registers the
message classes with it (`native`). `to_bytes` is then the extension's
serializer, which writes the bytes that `python_to_bytes`, the reference,
writes, and calls the reference for a message with fields of unexpected types.
`build_response` likewise uses the C builder for a validated request and
`python_build_response` for every other one. `tests/fuzz/test_sipcore.py`
compares each C function with its reference.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

from signaling.sip import headers as _headers
from signaling.sip.errors import SipSyntaxError
from signaling.sip.headers import CSeq, Headers, NameAddr, Via, canonical_name, parse_params
from signaling.sip.uri import SipUri, parse_host

logger = logging.getLogger("sip.message")

REASON_PHRASES = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
}


@dataclass(slots=True)
class MessageInfo:
    """The parsed headers every valid request or response has (§8.1.1)."""

    vias: list[Via]
    from_: NameAddr
    to: NameAddr
    call_id: str
    cseq: CSeq
    max_forwards: int | None = None
    contact: list[NameAddr] = field(default_factory=list)
    record_route: list[NameAddr] = field(default_factory=list)

    @property
    def top_via(self) -> Via:
        return self.vias[0]


@dataclass(slots=True)
class SipRequest:
    method: str
    uri: str
    headers: Headers
    body: bytes = b""
    request_uri: SipUri | None = None
    info: MessageInfo | None = None

    @property
    def parsed(self) -> MessageInfo:
        """The parsed essentials; only valid requests from the parser have them."""
        if self.info is None:
            raise SipSyntaxError("request was not validated")
        return self.info

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"


@dataclass(slots=True)
class SipResponse:
    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    info: MessageInfo | None = None

    @property
    def parsed(self) -> MessageInfo:
        if self.info is None:
            raise SipSyntaxError("response was not validated")
        return self.info

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"


SipMessage = SipRequest | SipResponse


def python_to_bytes(message: SipMessage) -> bytes:
    """Serialize with CRLF line ends and a Content-Length matching the body.

    This is the reference of the C serializer. Callers use `to_bytes`, which is the C
    serializer when the extension is built.
    """
    lines = [message.start_line()]
    for name, value in message.headers:
        if name != "Content-Length":
            lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(message.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + message.body


def _load_native() -> ModuleType | None:
    """Import `signaling.sip._sipcore` and register the message classes with it.

    Return None, after a warning, when the extension is not built or rejects the classes.
    """
    try:
        from signaling.sip import _sipcore
    except ImportError as exc:
        logger.warning(
            "signaling.sip._sipcore unavailable (%s), so SIP parsing, response building and "
            "serialization run the slower Python implementation; run `make install` to build it",
            exc,
        )
        return None
    try:
        _sipcore.configure(
            SipRequest,
            SipResponse,
            Headers,
            MessageInfo,
            Via,
            NameAddr,
            SipUri,
            CSeq,
            _headers._SPELLINGS,
            canonical_name,
            parse_host,
            SipSyntaxError,
            python_to_bytes,
        )
    except TypeError as exc:
        logger.warning(
            "signaling.sip._sipcore rejected the message classes (%s), so SIP parsing, response "
            "building and serialization run the slower Python implementation",
            exc,
        )
        return None
    return _sipcore


native: ModuleType | None = _load_native()
"""The configured C extension, or None when it is not built or rejected the classes."""

to_bytes: Callable[[SipMessage], bytes] = python_to_bytes if native is None else native.to_bytes
"""Serialize a message: the C serializer when it is built, else `python_to_bytes`."""


def build_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """Build a response copying Via, From, To, Call-ID and CSeq (§8.2.6.2).

    The header values are copied as received, so this works for a request whose
    other headers failed to parse. `to_tag` is added when the To has no tag.
    `headers` are added after those, and then Content-Type when there is a body.
    The C extension builds the response of a validated request when the arguments
    have the usual types, and `python_build_response`, the reference, builds every
    other one. `TransactionUser._respond` repeats this function inline.
    """
    reason = reason or REASON_PHRASES.get(status, "Unknown")
    if native is not None:
        response: SipResponse | None = native.build_response(
            request, status, reason, to_tag, headers, body, content_type
        )
        if response is not None:
            return response
    return python_build_response(
        request,
        status,
        reason,
        to_tag=to_tag,
        headers=headers,
        body=body,
        content_type=content_type,
    )


def python_build_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """Build the response that `build_response` returns, in Python.

    This is the reference of the C builder, and it builds each response that the C
    builder hands back.
    """
    table = request.headers.by_key()
    info = request.info
    # A validated request has one To, already parsed. Any other request has its To
    # fields read one by one.
    add_tag = bool(to_tag) and status > 100 and (info is None or "tag" not in info.to.params)
    items: list[tuple[str, str]] = []
    for key, name in _COPIED_HEADERS:
        for value in table.get(key, ()):
            if name == "To" and add_tag and (info is not None or not _has_tag(value)):
                value = f"{value};tag={to_tag}"
            items.append((name, value))
    if headers:
        items.extend(headers)
    if body and content_type:
        items.append(("Content-Type", content_type))
    return SipResponse(
        status, reason or REASON_PHRASES.get(status, "Unknown"), Headers(items), body
    )


# The headers a response copies from its request (§8.2.6.2), by lookup key.
_COPIED_HEADERS = tuple((name.lower(), name) for name in ("Via", "From", "To", "Call-ID", "CSeq"))


def _has_tag(value: str) -> bool:
    end = value.rfind(">")
    try:
        return "tag" in parse_params(value[end + 1 :] if end >= 0 else value[value.find(";") :])
    except SipSyntaxError:
        return False


_BOUNDARY_RE = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_MAX_PARTS = 16


def multipart_parts(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """Split a multipart body (RFC 2046 §5.1) into (content type, part body) pairs.

    Parts without a Content-Type are text/plain. Raise `SipSyntaxError` for a
    missing boundary, a body without the boundary, or more than 16 parts.
    """
    match = _BOUNDARY_RE.search(content_type)
    if not match:
        raise SipSyntaxError("invalid multipart body: Content-Type has no boundary")
    boundary = b"--" + (match.group(1) or match.group(2)).encode()
    pieces = body.split(boundary)
    if len(pieces) < 3:
        raise SipSyntaxError("invalid multipart body: boundary not found")
    parts: list[tuple[str, bytes]] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        if len(parts) >= _MAX_PARTS:
            raise SipSyntaxError(f"invalid multipart body: more than {_MAX_PARTS} parts")
        if piece.startswith(b"\r\n"):
            piece = piece[2:]
        head, sep, part_body = piece.partition(b"\r\n\r\n")
        if not sep:
            if not piece.startswith(b"\r\n"):
                raise SipSyntaxError("invalid multipart body: part without header end")
            head, part_body = b"", piece[2:]
        if part_body.endswith(b"\r\n"):
            part_body = part_body[:-2]
        part_type = "text/plain"
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-type":
                part_type = value.strip()
        parts.append((part_type, part_body))
    return parts


def sdp_body(content_type: str | None, body: bytes) -> bytes | None:
    """Return the SDP of a message body: the body itself, or the SDP part of a multipart."""
    if not body or content_type is None:
        return None
    main_type = content_type.split(";", 1)[0].strip().lower()
    if main_type == "application/sdp":
        return body
    if main_type.startswith("multipart/"):
        for part_type, part_body in multipart_parts(content_type, body):
            if part_type.split(";", 1)[0].strip().lower() == "application/sdp":
                return part_body
    return None
