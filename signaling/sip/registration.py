"""Outbound registration (RFC 3261 §10.2): keep one binding alive at a trunk's registrar.

`Registration` is a state machine without I/O. The UA core sends the
requests it builds, feeds it the final responses and transaction timeouts,
and fires its timer at `deadline`:

    IDLE --start--> REGISTERING --200--> REGISTERED --refresh due--> REGISTERING
                        |  401/407: answer with digest (again only if stale=true)
                        |  423: retry with the registrar's Min-Expires
                        +--failure--> BACKING_OFF --delay--> REGISTERING
    any --stop--> UNREGISTERING (Expires: 0) --final or timeout--> STOPPED

A binding is refreshed after 80 % of the granted expiry. Failures wait
for `Backoff.next_delay()`, which doubles from `retry_min` up to
`retry_max` with jitter, and a success resets it.
"""

from __future__ import annotations

import enum
import logging
import random
import secrets
from dataclasses import dataclass, field

from signaling.sip.auth import ALGORITHMS, DigestCredentials, build_authorization, parse_digest
from signaling.sip.errors import SipSyntaxError
from signaling.sip.headers import Headers
from signaling.sip.message import SipRequest, SipResponse

logger = logging.getLogger("sip.registration")


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    """One account at a registrar.

    `registrar` is an IP address, or a name that `SipEndpoint` looks up in
    DNS (SRV when `port` is None, else A/AAAA) before it starts the
    registration. `port` None means 5060 for an IP address. `domain` is the
    host of the address of record, by default the registrar.
    """

    name: str
    registrar: str
    user: str
    password: str
    port: int | None = None
    transport: str = "udp"
    domain: str | None = None
    expires: int = 600
    retry_min: float = 5.0
    retry_max: float = 300.0


@dataclass(slots=True)
class Backoff:
    """Exponential retry delays with ±10 % jitter; `reset` after a success."""

    initial: float
    maximum: float
    rng: random.Random = field(default_factory=random.Random)
    _current: float = field(default=0.0, init=False)

    def next_delay(self) -> float:
        self._current = self.initial if self._current == 0 else min(self._current * 2, self.maximum)
        return self._current * self.rng.uniform(0.9, 1.1)

    def reset(self) -> None:
        self._current = 0.0


class RegistrationState(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    BACKING_OFF = "backing-off"
    UNREGISTERING = "unregistering"
    STOPPED = "stopped"


class Registration:
    """Drives REGISTER for one `RegistrationConfig`; see the module docstring."""

    def __init__(self, config: RegistrationConfig, contact: str, rng: random.Random | None = None):
        if config.transport not in ("udp", "tcp"):
            raise ValueError(f"registration transport must be udp or tcp, not {config.transport!r}")
        self.config = config
        self.contact = contact
        self.state = RegistrationState.IDLE
        self.deadline: float | None = None
        self.expires_at: float | None = None
        self.last_error = ""
        self.backoff = Backoff(config.retry_min, config.retry_max, rng or random.Random())
        self._call_id = secrets.token_hex(12)
        self._from_tag = secrets.token_hex(6)
        self._cseq = 0
        self._expires = config.expires
        self._sending_expires = config.expires
        # The last digest challenge, answered again (with a growing nonce count)
        # on every later REGISTER, so refreshes need no extra round trip.
        self._challenge: tuple[str, DigestCredentials] | None = None
        self._nonce_count = 0
        self._attempts = 0  # challenges answered in this registration attempt

    @property
    def aor(self) -> str:
        return f"sip:{self.config.user}@{self.config.domain or self.config.registrar}"

    @property
    def request_uri(self) -> str:
        return f"sip:{self.config.domain or self.config.registrar}"

    def _change(self, new: RegistrationState, why: str) -> None:
        if new is not self.state:
            logger.info("registration %s: %s -> %s (%s)", self.config.name, self.state.value,
                        new.value, why)  # fmt: skip
        self.state = new

    def start(self, via: str) -> SipRequest:
        """Build the first REGISTER."""
        self._change(RegistrationState.REGISTERING, "start")
        self.deadline = None
        self._attempts = 0
        return self._register(via, self._expires)

    def stop(self, via: str) -> SipRequest | None:
        """Build the REGISTER with Expires: 0, or return None when nothing is bound."""
        if self.state is not RegistrationState.REGISTERED:
            self._change(RegistrationState.STOPPED, "stop")
            self.deadline = None
            return None
        self._change(RegistrationState.UNREGISTERING, "stop")
        self.deadline = None
        self._attempts = 0
        return self._register(via, 0)

    def on_timer(self, via: str, now: float) -> SipRequest | None:
        """Refresh or retry when `deadline` has passed."""
        if self.deadline is None or now < self.deadline:
            return None
        self.deadline = None
        if self.state in (RegistrationState.REGISTERED, RegistrationState.BACKING_OFF):
            self._change(RegistrationState.REGISTERING, "refresh" if self.expires_at else "retry")
            self._attempts = 0
            return self._register(via, self._expires)
        return None

    def on_response(self, response: SipResponse, via: str, now: float) -> SipRequest | None:
        """Handle a final response; return the next REGISTER to send, if any."""
        status = response.status
        active = (RegistrationState.REGISTERING, RegistrationState.UNREGISTERING)
        if self.state not in active or status < 200:
            return None
        if status in (401, 407):
            return self._answer_challenge(response, via, now)
        if self.state is RegistrationState.UNREGISTERING:
            self._change(RegistrationState.STOPPED, f"{status} to unregister")
            return None
        if status == 423:
            min_expires = response.headers.get("Min-Expires") or ""
            if min_expires.isdigit() and int(min_expires) > self._expires:
                self._expires = min(int(min_expires), 86_400)
                return self._register(via, self._expires)
            self._fail(now, "423 without a usable Min-Expires")
            return None
        if 200 <= status < 300:
            granted = self._granted_expires(response)
            self.expires_at = now + granted
            self.deadline = now + max(1.0, granted * 0.8)
            self.backoff.reset()
            self.last_error = ""
            self._change(RegistrationState.REGISTERED, f"{status}, expires in {granted} s")
            return None
        self._fail(now, f"{status} {response.reason}")
        return None

    def on_timeout(self, now: float) -> None:
        """The REGISTER transaction timed out (Timer F)."""
        if self.state is RegistrationState.UNREGISTERING:
            self._change(RegistrationState.STOPPED, "timeout while unregistering")
        elif self.state is RegistrationState.REGISTERING:
            self._fail(now, "no response from the registrar")

    def _fail(self, now: float, reason: str) -> None:
        self.last_error = reason
        self.expires_at = None
        self._challenge = None
        if self.state is RegistrationState.UNREGISTERING:
            self._change(RegistrationState.STOPPED, reason)
            return
        delay = self.backoff.next_delay()
        self.deadline = now + delay
        logger.warning("registration %s failed: %s; retrying in %.1f s", self.config.name,
                       reason, delay)  # fmt: skip
        self._change(RegistrationState.BACKING_OFF, reason)

    def _answer_challenge(self, response: SipResponse, via: str, now: float) -> SipRequest | None:
        """Answer a 401/407 once per attempt, or again when the registrar says stale=true."""
        header = "Authorization" if response.status == 401 else "Proxy-Authorization"
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        for value in response.headers.raw(name):
            try:
                challenge = parse_digest(value)
            except SipSyntaxError:
                continue
            algorithm = challenge.params.get("algorithm", "MD5").upper()
            if challenge.scheme.lower() != "digest" or algorithm not in ALGORITHMS:
                continue
            stale = challenge.params.get("stale", "").lower() == "true"
            if (self._attempts >= 1 and not stale) or self._attempts >= 3:
                self._fail(now, f"credentials rejected ({response.status})")
                return None
            self._attempts += 1
            self._challenge = (header, challenge)
            self._nonce_count = 0
            return self._register(via, self._sending_expires)
        self._fail(now, f"{response.status} without a usable digest challenge")
        return None

    def _granted_expires(self, response: SipResponse) -> int:
        """Read our binding's expiry from the 2xx (§10.2.4), else the Expires header."""
        for contact in response.parsed.contact:
            if contact.uri_text == self.contact.strip("<>"):
                value = contact.params.get("expires")
                if value and value.isdigit():
                    return int(value)
        value = response.headers.get("Expires")
        if value and value.isdigit():
            return int(value)
        return self._expires

    def _register(self, via: str, expires: int) -> SipRequest:
        self._cseq += 1
        self._sending_expires = expires
        headers = Headers()
        headers.add("Via", via)
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{self.aor}>;tag={self._from_tag}")
        headers.add("To", f"<{self.aor}>")
        headers.add("Call-ID", self._call_id)
        headers.add("CSeq", f"{self._cseq} REGISTER")
        headers.add("Contact", self.contact)
        headers.add("Expires", str(expires))
        if self._challenge is not None:
            header, challenge = self._challenge
            self._nonce_count += 1
            value = build_authorization(
                challenge, "REGISTER", self.request_uri, self.config.user, self.config.password,
                nc=self._nonce_count, cnonce=secrets.token_hex(8),
            )  # fmt: skip
            headers.add(header, value)
        return SipRequest("REGISTER", self.request_uri, headers)
