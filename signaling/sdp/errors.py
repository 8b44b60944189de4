"""The two SDP errors: a body that breaks RFC 8866 syntax, and an offer we cannot answer."""

from __future__ import annotations


class SdpError(ValueError):
    """A session description is invalid, or an offer or answer breaks RFC 3264.

    `line_number` is the 1-based line of the body where the problem was found,
    or None when the problem is not tied to one line (a missing line, a
    mismatch between offer and answer).
    """

    def __init__(self, message: str, line_number: int | None = None) -> None:
        self.message = message
        self.line_number = line_number
        text = message if line_number is None else f"line {line_number}: {message}"
        super().__init__(text)


class NoCommonCodec(SdpError):
    """No audio stream of the offer (or answer) can be used with our codecs.

    A SIP UAS answers the INVITE with 488 Not Acceptable Here.
    """
