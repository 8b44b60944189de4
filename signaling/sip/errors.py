"""The two sides of SIP errors: the peer broke the protocol, or we misused the API.

`SipSyntaxError` and its subclass `SipRequestError` are peer faults. A request
that fails carries the response status the UAS sends back (400 by default,
505, 416, 413 ...). Our own misuse raises `SipUsageError`, and a call that is
already over raises `CallEnded` to the application.
"""

from __future__ import annotations


class SipSyntaxError(ValueError):
    """A message, header or URI from the network is malformed.

    `status` is the response a UAS sends for a request that fails this way.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class FramingError(SipSyntaxError):
    """The byte stream cannot be split into messages, so the connection must close.

    `request` is the failed request (a `SipRequest` with the headers a 400
    copies) when enough of it was readable to answer, else None.
    """

    def __init__(self, reason: str, status: int = 400, request: object | None = None) -> None:
        super().__init__(reason, status)
        self.request = request


class SipUsageError(RuntimeError):
    """The application or the stack itself called the API in a wrong state."""


class CallEnded(Exception):
    """The call is over (BYE, CANCEL, timeout or shutdown) and cannot be changed."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"call ended: {reason}")
        self.reason = reason
