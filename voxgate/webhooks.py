"""Signed webhooks: POST each call event, as JSON, to configured URLs.

Each URL has its own worker task reading its own bounded hub subscription,
so a slow or failing receiver delays and loses only its own events (the
oldest first, counted in `dropped`). A worker sends one event at a time, in
publish order. Each delivery is retried by a `RetryPolicy` with exponential
backoff on 5xx, 429, timeouts and connection errors. Any other status is
final, because sending the same body again cannot change the response.

Signature: `X-VoxGate-Signature: sha256=<hex>` is the HMAC-SHA256 of the raw
body with the shared secret. The body contains `sent_at` (Unix seconds, the
same value as the `X-VoxGate-Timestamp` header), so the signature covers the
time and receivers can reject old or replayed deliveries. Retries resend the
same body and signature.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from voxgate.callevents import CallEvent, EventHub, Subscription

logger = logging.getLogger("voxgate.webhooks")

SIGNATURE_HEADER = "X-VoxGate-Signature"
TIMESTAMP_HEADER = "X-VoxGate-Timestamp"
DELIVERY_HEADER = "X-VoxGate-Delivery"
USER_AGENT = "VoxGate-Webhooks/1"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how late a failed delivery is tried again.

    Attempt 1 is the first send. After failed attempt n the sender waits
    `initial_delay_s * multiplier ** (n - 1)`, capped at `max_delay_s`.
    """

    max_attempts: int = 5
    initial_delay_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.initial_delay_s < 0 or self.multiplier < 1 or self.max_delay_s < 0:
            raise ValueError("retry delays must be non-negative and the multiplier at least 1")

    def delay_after(self, attempt: int) -> float:
        """Return the wait in seconds after failed attempt `attempt` (1-based)."""
        return min(self.max_delay_s, self.initial_delay_s * self.multiplier ** (attempt - 1))


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Webhook targets and limits.

    `kinds` selects events (exact kinds, or prefixes such as `acd.*`); empty
    sends all. `timeout_s` bounds one HTTP attempt, `queue_size` the events
    waiting per URL.
    """

    urls: tuple[str, ...]
    secret: str
    kinds: tuple[str, ...] = ()
    timeout_s: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    queue_size: int = 1000

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("webhook secret is empty; set a shared secret for the signature")
        for url in self.urls:
            parsed = URL(url)
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise ValueError(f"invalid webhook URL {url!r}: expected http:// or https://")
        if self.timeout_s <= 0:
            raise ValueError(f"webhook timeout must be positive, got {self.timeout_s}")
        if self.queue_size < 1:
            raise ValueError(f"webhook queue size must be at least 1, got {self.queue_size}")


def sign(secret: str, body: bytes) -> str:
    """Return the `X-VoxGate-Signature` value for `body`."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, body: bytes, signature: str) -> bool:
    """Check a received signature in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


class AttemptResult(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FINAL_FAILURE = "final_failure"


@dataclass(slots=True)
class TargetStats:
    delivered: int = 0
    failed: int = 0
    attempts: int = 0


@dataclass(slots=True)
class _Target:
    url: str
    label: str
    subscription: Subscription
    stats: TargetStats = field(default_factory=TargetStats)
    task: asyncio.Task[None] | None = None


Sleep = Callable[[float], Awaitable[None]]


def _label(url: str) -> str:
    """Return the URL without query and credentials, safe to log."""
    parsed = URL(url)
    return str(parsed.with_user(None).with_query(None).with_fragment(None))


class WebhookSender:
    """Deliver the hub's events to every configured URL.

    `start` subscribes one bounded queue per URL and starts its worker;
    `close` sends what is queued for up to `drain_timeout_s`, then stops;
    `stats` still reports the counters afterwards.
    `sleep` waits between attempts (a virtual clock's sleep in tests).
    """

    def __init__(
        self,
        config: WebhookConfig,
        hub: EventHub,
        *,
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._hub = hub
        self._session = session
        self._own_session = session is None
        self._sleep = sleep
        self._clock = clock
        self._targets: list[_Target] = []

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        for url in self.config.urls:
            subscription = self._hub.subscribe(
                maxsize=self.config.queue_size, kinds=self.config.kinds
            )
            target = _Target(url, _label(url), subscription)
            target.task = asyncio.create_task(self._run(target), name=f"webhook {target.label}")
            self._targets.append(target)
        logger.info("webhooks started for %d URL(s)", len(self._targets))

    def stats(self) -> dict[str, dict[str, int]]:
        """Return the counters per URL (without query), such as delivered, failed and dropped."""
        return {
            target.label: {
                "delivered": target.stats.delivered,
                "failed": target.stats.failed,
                "attempts": target.stats.attempts,
                "dropped": target.subscription.dropped,
                "queued": target.subscription.pending(),
            }
            for target in self._targets
        }

    async def _run(self, target: _Target) -> None:
        while True:
            try:
                event = await target.subscription.get()
            except EOFError:
                return
            try:
                await self._deliver(target, event)
            except Exception:
                target.stats.failed += 1
                logger.exception("call %s: webhook to %s failed", event.call_id, target.label)

    def encode(self, event: CallEvent) -> tuple[bytes, dict[str, str]]:
        """Return the body and headers of one delivery of `event`."""
        sent_at = int(self._clock())
        delivery_id = uuid.uuid4().hex
        message: dict[str, Any] = {"id": delivery_id, "sent_at": sent_at, **event.to_json()}
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.config.secret, body),
            TIMESTAMP_HEADER: str(sent_at),
            DELIVERY_HEADER: delivery_id,
        }
        return body, headers

    async def _deliver(self, target: _Target, event: CallEvent) -> None:
        body, headers = self.encode(event)
        policy = self.config.retry
        for attempt in range(1, policy.max_attempts + 1):
            target.stats.attempts += 1
            result, detail = await self._attempt(target.url, body, headers)
            if result is AttemptResult.DELIVERED:
                target.stats.delivered += 1
                return
            if result is AttemptResult.FINAL_FAILURE:
                target.stats.failed += 1
                logger.warning(
                    "call %s: webhook %s to %s rejected (%s); not retried",
                    event.call_id,
                    event.kind,
                    target.label,
                    detail,
                )
                return
            if attempt < policy.max_attempts:
                delay = policy.delay_after(attempt)
                logger.info(
                    "call %s: webhook %s to %s attempt %d failed (%s); retrying in %.1f s",
                    event.call_id,
                    event.kind,
                    target.label,
                    attempt,
                    detail,
                    delay,
                )
                await self._sleep(delay)
        target.stats.failed += 1
        logger.warning(
            "call %s: webhook %s to %s failed after %d attempts (%s); giving up",
            event.call_id,
            event.kind,
            target.label,
            policy.max_attempts,
            detail,
        )

    async def _attempt(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[AttemptResult, str]:
        """POST once; return the result and a short reason for the log."""
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        try:
            async with self._session.post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                await response.read()
                status = response.status
        except TimeoutError:
            return AttemptResult.RETRY, f"timed out after {self.config.timeout_s} s"
        except aiohttp.ClientError as exc:
            return AttemptResult.RETRY, f"{type(exc).__name__}: {exc}"
        if 200 <= status < 300:
            return AttemptResult.DELIVERED, str(status)
        if status >= 500 or status == 429:
            return AttemptResult.RETRY, f"HTTP {status}"
        return AttemptResult.FINAL_FAILURE, f"HTTP {status}"

    async def close(self, drain_timeout_s: float = 5.0) -> None:
        """Stop taking events, send the queued ones for up to `drain_timeout_s`, then stop."""
        for target in self._targets:
            target.subscription.close()
        tasks = [target.task for target in self._targets if target.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=drain_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for target in self._targets:
            lost = target.subscription.pending()
            if lost:
                logger.warning("webhook to %s stopped with %d events unsent", target.label, lost)
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
