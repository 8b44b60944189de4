"""Read a test node's event stream, CDRs and recordings over its HTTP API (loopback only)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from tests.support.node import RunningNode
from tests.support.waiting import wait_until


class EventCollector:
    """Collect the node's events of `kinds` from its SSE stream in a thread.

    Open it before the call starts, so no event is missed; `wait_for`
    returns the first collected event of a kind, waiting a bounded time.
    """

    def __init__(self, node: RunningNode, kinds: str) -> None:
        self._url = f"http://127.0.0.1:{node.http_port}/api/events?kinds={kinds}"
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._response: Any = None
        self._thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        self._opened = threading.Event()

    def __enter__(self) -> EventCollector:
        self._thread.start()
        if not self._opened.wait(10):
            raise TimeoutError("the event stream did not open within 10 s")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        response = self._response
        if response is not None:
            response.close()
        self._thread.join(5)

    def _read(self) -> None:
        try:
            with urllib.request.urlopen(self._url, timeout=60) as response:
                self._response = response
                self._opened.set()
                for raw in response:
                    line = raw.decode("utf-8").rstrip("\n")
                    if line.startswith("data: "):
                        with self._lock:
                            self.events.append(json.loads(line[len("data: ") :]))
        except (OSError, ValueError, AttributeError):
            # http.client raises AttributeError when __exit__ closes the response mid-read.
            return
        finally:
            self._opened.set()

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [event for event in self.events if event["kind"] == kind]

    def wait_for(self, kind: str, timeout_s: float) -> dict[str, Any]:
        found = wait_until(lambda: self.of_kind(kind), timeout_s, f"a {kind} event")
        return found[0]


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    content_type: str
    body: bytes


def http_get(node: RunningNode, path: str) -> HttpReply:
    """GET `path` from the node on 127.0.0.1 and return the status, type and body."""
    url = f"http://127.0.0.1:{node.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return HttpReply(response.status, response.headers.get_content_type(), response.read())
    except urllib.error.HTTPError as exc:
        return HttpReply(exc.code, exc.headers.get_content_type(), exc.read())


def wait_for_cdr(node: RunningNode, call_id: str, timeout_s: float) -> dict[str, Any]:
    """Poll `GET /api/cdrs/{call_id}` until the CDR is written; return it."""
    quoted = urllib.parse.quote(call_id, safe="")

    def probe() -> dict[str, Any] | None:
        reply = http_get(node, f"/api/cdrs/{quoted}")
        if reply.status != 200:
            return None
        record: dict[str, Any] = json.loads(reply.body)
        return record

    return wait_until(probe, timeout_s, f"the CDR of call {call_id}", interval_s=0.2)
