"""The stateless request checks a UAS applies before processing (RFC 3261 §8.2).

Each check returns a `Rejection` (status, reason, extra headers) or None.
The UA core runs them in the order of §8.2: Max-Forwards, method, URI
schemes, Require, then content (Accept, Content-Encoding, Content-Type).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from signaling.sip.errors import SipSyntaxError
from signaling.sip.headers import media_type, parse_tokens, split_list
from signaling.sip.message import SipRequest, sdp_body

# Methods we recognize but may not serve get 405 with Allow; any other gets 501.
KNOWN_METHODS = frozenset(
    {
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "REGISTER",
        "PRACK", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH",
    }
)  # fmt: skip
SUPPORTED_OPTIONS = ("timer",)
ACCEPTED_BODIES = ("application/sdp", "multipart/mixed")


@dataclass(frozen=True, slots=True)
class Rejection:
    status: int
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


def check_request(request: SipRequest, allowed: tuple[str, ...]) -> Rejection | None:
    # `parsed` raises for a request the parser did not validate.
    info = request.info if request.info is not None else request.parsed
    method = request.method
    if info.max_forwards == 0 and method != "OPTIONS":
        # VoxGate bridges calls onward as a B2BUA, so a spent hop budget ends here
        # (§16.3 step 3). OPTIONS is answered, as §11 allows.
        return Rejection(483)
    if method not in allowed:
        status = 405 if method in KNOWN_METHODS else 501
        return Rejection(status, headers=[("Allow", ", ".join(allowed))])
    if method == "REGISTER" and (info.to.uri is None or info.from_.uri is None):
        # §10.3 step 2: the address of record must be a SIP URI.
        return Rejection(416, "address of record is not a SIP URI")
    # `Headers.get_list` inlined, which saves a Python call per request.
    require_fields = request.headers.by_key().get("require") if method != "CANCEL" else None
    if require_fields:
        require = [item for value in require_fields for item in split_list(value)]
        try:
            required = parse_tokens(require)
        except SipSyntaxError:
            return Rejection(400, "invalid Require header")
        unsupported = [tag for tag in required if tag.lower() not in SUPPORTED_OPTIONS]
        if unsupported:
            return Rejection(420, headers=[("Unsupported", ", ".join(unsupported))])
    if method in ("INVITE", "UPDATE"):
        return check_content(request)
    return None


def check_content(request: SipRequest) -> Rejection | None:
    """Check Accept, Content-Encoding and Content-Type of an offer-carrying request (§8.2.3)."""
    # One read of the header index stands for `in`, `get_list` and `get`, which
    # saves three Python calls per INVITE.
    table = request.headers.by_key()
    accept_fields = table.get("accept")
    if accept_fields:
        accept = {media_type(item) for value in accept_fields for item in split_list(value)}
        if not {"application/sdp", "application/*", "*/*"} & accept:
            return Rejection(406, headers=[("Accept", "application/sdp")])
    if not request.body:
        return None
    encoding_fields = table.get("content-encoding")
    if encoding_fields and any(
        item.lower() != "identity" for value in encoding_fields for item in split_list(value)
    ):
        return Rejection(415, headers=[("Accept-Encoding", "identity")])
    content_type_fields = table.get("content-type")
    content_type = content_type_fields[0] if content_type_fields else None
    if content_type == "application/sdp":
        body_type: str | None = content_type  # what `media_type` returns for it
    else:
        body_type = media_type(content_type) if content_type is not None else None
    if body_type not in ACCEPTED_BODIES:
        return Rejection(415, headers=[("Accept", ", ".join(ACCEPTED_BODIES))])
    if body_type == "application/sdp":
        # `sdp_body` returns such a body as it is, so only a multipart body needs the check.
        return None
    try:
        sdp_body(content_type, request.body)
    except SipSyntaxError as error:
        return Rejection(400, error.reason)
    return None


def capabilities(allowed: tuple[str, ...]) -> list[tuple[str, str]]:
    """Headers of an OPTIONS 200 (§11.2)."""
    return [
        ("Allow", ", ".join(allowed)),
        ("Accept", ", ".join(ACCEPTED_BODIES)),
        ("Accept-Encoding", "identity"),
        ("Accept-Language", "en"),
        ("Supported", ", ".join(SUPPORTED_OPTIONS)),
    ]


def session_expires(request: SipRequest, min_interval: int) -> int | Rejection | None:
    """Negotiate a session timer (RFC 4028) for an INVITE or UPDATE.

    Return the interval to use with us as refreshee (refresher=uac), None
    when no timer runs, or a Rejection (422 below `min_interval`).
    """
    value = request.headers.get("Session-Expires")
    if value is None:
        return None
    text = value.split(";", 1)[0].strip()
    if not text.isdigit() or len(text) > 9:
        return Rejection(400, "invalid Session-Expires")
    interval = int(text)
    if interval < min_interval:
        return Rejection(422, headers=[("Min-SE", str(min_interval))])
    supported = [item.lower() for item in request.headers.get_list("Supported")]
    if "timer" not in supported:
        # RFC 4028 §9: the UAS would have to refresh; declining the timer is allowed.
        return None
    if "refresher=uas" in value.replace(" ", "").lower():
        # NOTE: we never send refreshes, so a request for refresher=uas gets no
        # timer rather than a promise we would not keep.
        return None
    return interval
