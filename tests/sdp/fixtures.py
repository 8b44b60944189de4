"""Load the captured SDP bodies under tests/data/sdp."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "sdp"


def load_body(name: str) -> bytes:
    """Return the SDP body of a capture: a whole .sdp file, or the body of a .sip message."""
    raw = (DATA / name).read_bytes()
    if name.endswith(".sip"):
        _headers, separator, body = raw.partition(b"\r\n\r\n")
        assert separator, f"{name} has no blank line between headers and body"
        return body
    return raw
