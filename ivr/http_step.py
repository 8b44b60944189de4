"""The `http` step: one JSON web request with a timeout, retries with backoff, and a fallback.

Retry policy: connection errors, timeouts, 429 and 5xx responses are retried up
to `retries` times, waiting `backoff_s * 2**attempt` between tries; other
4xx responses and invalid JSON are not, because sending the same request again
cannot fix them. Request URL values are percent-encoded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from ivr.events import EventKind
from ivr.model import HttpStep
from ivr.templates import TemplateError

if TYPE_CHECKING:
    from ivr.engine import IvrSession

log = logging.getLogger("ivr.http")

MAX_RESPONSE_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many extra tries and how long to wait before each."""

    retries: int
    backoff_s: float

    def delays(self) -> list[float]:
        return [self.backoff_s * (2**attempt) for attempt in range(self.retries)]


class HttpStepError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def dotted_get(data: Any, path: str) -> Any:
    """Return the value at a dotted path of keys and list indexes; KeyError if absent."""
    current = data
    for segment in path.split("."):
        if isinstance(current, dict) and segment in current:
            current = current[segment]
        elif isinstance(current, list) and segment.isdigit() and int(segment) < len(current):
            current = current[int(segment)]
        else:
            raise KeyError(path)
    return current


def _render_json(session: IvrSession, value: Any) -> Any:
    if isinstance(value, str):
        from ivr.templates import Template

        return Template(value).evaluate(session.variables)
    if isinstance(value, dict):
        return {k: _render_json(session, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_json(session, v) for v in value]
    return value


async def _attempt(
    http: aiohttp.ClientSession,
    step: HttpStep,
    url: str,
    headers: dict[str, str],
    body: Any,
) -> tuple[int, Any]:
    timeout = aiohttp.ClientTimeout(total=step.timeout_s)
    try:
        async with http.request(
            step.method, url, headers=headers, json=body, timeout=timeout
        ) as response:
            raw = await response.content.read(MAX_RESPONSE_BYTES + 1)
            status = response.status
    except TimeoutError as exc:
        raise HttpStepError("request timed out", retryable=True) from exc
    except aiohttp.ClientError as exc:
        raise HttpStepError(f"request failed: {type(exc).__name__}", retryable=True) from exc
    if status == 429:
        raise HttpStepError("rate limited (429)", retryable=True)
    if status >= 500:
        raise HttpStepError(f"server error {status}", retryable=True)
    if status >= 400:
        raise HttpStepError(f"client error {status}", retryable=False)
    if len(raw) > MAX_RESPONSE_BYTES:
        raise HttpStepError(f"response larger than {MAX_RESPONSE_BYTES} bytes", retryable=False)
    if not raw.strip():
        return status, None
    try:
        return status, json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HttpStepError("response is not valid JSON", retryable=False) from exc


async def run_http_step(
    session: IvrSession, step_id: str, step: HttpStep, http: aiohttp.ClientSession | None
) -> bool:
    """Run the request and store the `save` fields; returns False on failure."""
    try:
        url = session.render(step.url, url_quote=True)
        headers = {name: session.render(value) for name, value in step.headers.items()}
        body = _render_json(session, step.json_body) if step.json_body is not None else None
    except TemplateError as exc:
        return _fail(session, step_id, f"template: {exc}", attempts=0)

    owned = http is None
    client = http if http is not None else aiohttp.ClientSession()
    policy = RetryPolicy(step.retries, step.backoff_s)
    attempts = 0
    try:
        for delay in [*policy.delays(), None]:
            attempts += 1
            try:
                status, data = await _attempt(client, step, url, headers, body)
            except HttpStepError as exc:
                log.warning(
                    "call %s: http step %s attempt %d failed: %s",
                    session.call_id,
                    step_id,
                    attempts,
                    exc,
                )
                if not exc.retryable or delay is None:
                    return _fail(session, step_id, str(exc), attempts=attempts)
                await asyncio.sleep(delay)
                continue
            break
    finally:
        if owned:
            await client.close()

    saved: dict[str, Any] = {}
    missing: list[str] = []
    for name, path in step.save.items():
        try:
            saved[name] = dotted_get(data, path)
        except KeyError:
            missing.append(path)

    session.variables.update(saved)
    session.variables["http_status"] = status
    session.variables["http_error"] = None
    session.emit(
        EventKind.HTTP_REQUEST,
        step_id,
        ok=True,
        status=status,
        attempts=attempts,
        saved=saved,
        missing=missing,
    )
    if missing:
        session.variables["http_error"] = "missing fields"
        return False
    return True


def _fail(session: IvrSession, step_id: str, message: str, *, attempts: int) -> bool:
    session.variables["http_status"] = None
    session.variables["http_error"] = message
    session.emit(EventKind.HTTP_REQUEST, step_id, ok=False, error=message, attempts=attempts)
    return False
