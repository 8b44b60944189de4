"""DTMF carried in SIP INFO request bodies.

Two body formats are in use. `application/dtmf-relay` (a de-facto format
from Cisco, with no RFC) has `Signal=<key>` and `Duration=<ms>` lines;
implementations vary in key case, spaces around `=`, and a missing final
CRLF. `application/dtmf` carries the key alone, either as the character or as
its RFC 4733 event code (11 for #).
"""

from __future__ import annotations

from ivr.channel import DtmfInput
from media.rfc4733 import DTMF_EVENTS

MAX_INFO_BODY = 1024
DTMF_CONTENT_TYPES = ("application/dtmf-relay", "application/dtmf")


def _key(value: str) -> str:
    """Map a key given as a character or an RFC 4733 event code (0-15) to the DTMF character."""
    text = value.strip()
    if len(text) == 1 and text.upper() in DTMF_EVENTS:
        return text.upper()
    if text.isdigit() and int(text) < len(DTMF_EVENTS):
        return DTMF_EVENTS[int(text)]
    raise ValueError(f"invalid DTMF key {text[:16]!r} in SIP INFO body")


def parse_info_dtmf(content_type: str, body: bytes | str) -> DtmfInput | None:
    """Return the key press in a SIP INFO body.

    Returns None when `content_type` is not a DTMF type. Raises ValueError
    when the body of a DTMF type is malformed, so the caller can answer 400.
    Duration is 0 when the body does not carry one.
    """
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in DTMF_CONTENT_TYPES:
        return None
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_INFO_BODY:
        raise ValueError(f"SIP INFO DTMF body of {len(raw)} bytes exceeds {MAX_INFO_BODY}")
    text = raw.decode("utf-8", errors="replace").strip()

    if media_type == "application/dtmf":
        return DtmfInput(_key(text), 0)

    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, separator, value = line.partition("=")
        if not separator:
            raise ValueError("invalid line in application/dtmf-relay body: missing '='")
        fields[name.strip().lower()] = value.strip()
    if "signal" not in fields:
        raise ValueError("application/dtmf-relay body has no Signal line")
    duration_ms = 0
    if "duration" in fields:
        duration_text = fields["duration"]
        if not duration_text.isdigit():
            raise ValueError(f"invalid Duration {duration_text[:16]!r} in dtmf-relay body")
        duration_ms = min(int(duration_text), 60_000)
    return DtmfInput(_key(fields["signal"]), duration_ms)
