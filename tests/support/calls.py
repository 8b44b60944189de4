"""Call outcome types shared by the SIP client wrappers."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CallEndedBy(enum.Enum):
    """Which side ended a call, or FAILED if it was never established."""

    LOCAL = "local"
    REMOTE = "remote"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CallEnd:
    """How a call ended: the side, the client's reason text and the time.monotonic() instant."""

    ended_by: CallEndedBy
    reason: str
    at: float
