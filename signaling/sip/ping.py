"""OPTIONS pings (keepalives) that tell whether a trunk or proxy responds.

`Ping` is a state machine without I/O, like `Registration`. The UA core
sends the OPTIONS it builds, feeds it the final responses and fires its
timer at `deadline`:

    UNKNOWN --any final response--> REACHABLE --no response in timeout--> UNREACHABLE
                                        ^                                      |
                                        +----------any final response----------+

Any final response counts, even 404 or 405: it proves the peer is up and
parses our requests, which is what Asterisk's `qualify` checks too. A ping
goes out every `interval` seconds, and the answer to one must come within
`timeout` seconds. The round-trip time of the last answer is kept.
"""

from __future__ import annotations

import enum
import logging
import secrets
from dataclasses import dataclass

from signaling.sip.headers import Headers
from signaling.sip.message import SipRequest

logger = logging.getLogger("sip.ping")


class PingState(enum.Enum):
    UNKNOWN = "unknown"
    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class PingConfig:
    """One peer to ping: `target` is the Request-URI, sent to `host` and `port`.

    The UA core needs `host` as an IP address; `SipEndpoint` looks names up
    first (SRV records when `port` is None). `port` None means 5060 for an
    address. `interval` and `timeout` are in seconds, `timeout` the shorter.
    """

    name: str
    target: str
    host: str
    port: int | None = None
    transport: str = "udp"
    interval: float = 30.0
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.timeout < self.interval:
            raise ValueError(
                f"ping {self.name}: timeout {self.timeout} s must be above 0 "
                f"and below the interval {self.interval} s"
            )


class Ping:
    """The keepalive state of one peer; see the module docstring."""

    def __init__(self, config: PingConfig, contact: str, from_uri: str) -> None:
        self.config = config
        self.state = PingState.UNKNOWN
        self.rtt: float | None = None
        self.last_status: int | None = None
        self.deadline: float | None = None
        self._contact = contact
        self._from_uri = from_uri
        self._call_id = secrets.token_hex(12)
        self._from_tag = secrets.token_hex(6)
        self._cseq = 0
        self._sent_at: float | None = None
        self._waiting = False

    def start(self, now: float) -> None:
        """Send the first ping at once."""
        self.deadline = now

    def on_timer(self, via: str, now: float) -> SipRequest | None:
        """Return the next OPTIONS when due; mark the peer unreachable when a response is late."""
        if self.deadline is None or now < self.deadline:
            return None
        if self._waiting:
            self._waiting = False
            self._change(PingState.UNREACHABLE, f"no answer within {self.config.timeout} s")
            assert self._sent_at is not None
            self.deadline = self._sent_at + self.config.interval
            if self.deadline > now:
                return None
        return self._send(via, now)

    def on_response(self, status: int, now: float) -> bool:
        """Take the final response to the last ping; True when the state changed."""
        if self._sent_at is None or status < 200:
            return False
        self.last_status = status
        self.rtt = now - self._sent_at
        if self._waiting:
            self._waiting = False
            self.deadline = self._sent_at + self.config.interval
        return self._change(PingState.REACHABLE, f"status {status}")

    def _send(self, via: str, now: float) -> SipRequest:
        self._cseq += 1
        self._sent_at = now
        self._waiting = True
        self.deadline = now + self.config.timeout
        headers = Headers()
        headers.add("Via", via)
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{self._from_uri}>;tag={self._from_tag}")
        headers.add("To", f"<{self.config.target}>")
        headers.add("Call-ID", self._call_id)
        headers.add("CSeq", f"{self._cseq} OPTIONS")
        headers.add("Contact", self._contact)
        headers.add("Accept", "application/sdp")
        return SipRequest("OPTIONS", self.config.target, headers)

    def _change(self, new: PingState, reason: str) -> bool:
        if new is self.state:
            return False
        logger.info("ping %s: %s -> %s (%s)", self.config.name, self.state.value, new.value, reason)
        self.state = new
        return True
