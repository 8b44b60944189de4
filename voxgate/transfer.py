"""An agent's blind transfer of a bridged caller: the target check and the transfer error.

`ContactCenter.transfer` does the transfer itself. This module contains
its stateless parts: the check of a number target (a dialable number or
a SIP URI), and `TransferError`, which carries the signaling error code and
the name of the message field at fault, so that the agent page can show
why a transfer was not done. A call whose transfer fails stays bridged.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from signaling.sip.errors import SipSyntaxError
from signaling.sip.uri import parse_sip_uri
from signaling.webrtc.protocol import ErrorCode

MAX_NUMBER_DIGITS = 32
# A dialable number: an optional leading + and digits, * and #.
_NUMBER = re.compile(rf"\+?[0-9*#]{{1,{MAX_NUMBER_DIGITS}}}")


class TransferError(Exception):
    """A transfer that was not done; the call is still bridged.

    `code` is the signaling error code for the agent page, and `field` names
    the `transfer` message field at fault (`target`, `target_kind` or
    `call_id`).
    """

    def __init__(self, code: ErrorCode, message: str, *, field: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def check_number_target(target: str, allow: Sequence[str] = ("*",)) -> str:
    """Return `target` when it is a dialable number or a SIP URI that `allow` permits.

    A SIP URI must name a user and a host and carry no URI headers, because
    a header such as `?Replaces=` would turn a blind transfer into an
    attended one (RFC 3891), which this node does not do. `allow` contains
    case-sensitive glob patterns, as a flow's `transfer_allow` does. Raise
    `TransferError` for an invalid or forbidden target.
    """
    checked = _check_form(target)
    if not any(fnmatch.fnmatchcase(checked, pattern) for pattern in allow):
        raise TransferError(
            ErrorCode.FORBIDDEN,
            "field 'target' is not in the transfer allow-list for agents",
            field="target",
        )
    return checked


def _check_form(target: str) -> str:
    if target.lower().startswith(("sip:", "sips:")):
        try:
            uri = parse_sip_uri(target)
        except SipSyntaxError as exc:
            raise TransferError(
                ErrorCode.BAD_MESSAGE,
                f"field 'target' is not a valid SIP URI: {exc}",
                field="target",
            ) from None
        if uri.user is None:
            raise TransferError(
                ErrorCode.BAD_MESSAGE,
                "field 'target' needs a user part (user@host)",
                field="target",
            )
        if uri.headers:
            raise TransferError(
                ErrorCode.BAD_MESSAGE, "field 'target' must not carry URI headers", field="target"
            )
        return target
    if not _NUMBER.fullmatch(target):
        raise TransferError(
            ErrorCode.BAD_MESSAGE,
            f"field 'target' must be a SIP URI or a number of at most {MAX_NUMBER_DIGITS} "
            "digits, * or # with an optional leading +",
            field="target",
        )
    return target
