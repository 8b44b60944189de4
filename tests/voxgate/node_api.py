"""Read a running node's event stream (SSE) and CDRs over HTTP, as an API client would."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.support.waiting import wait_until

SSE_OPEN_TIMEOUT_S = 10.0


class SseReader:
    """Read `GET /api/events` in a thread and queue each event's JSON.

    The node subscribes the client before it sends the response headers, so
    once the context manager is entered, every event published later arrives.
    """

    def __init__(self, http_port: int, token: str | None, query: str = "") -> None:
        self._connection = http.client.HTTPConnection(
            "127.0.0.1", http_port, timeout=SSE_OPEN_TIMEOUT_S
        )
        self._headers = {"Accept": "text/event-stream"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._path = f"/api/events{query}"
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)

    def __enter__(self) -> SseReader:
        self._connection.request("GET", self._path, headers=self._headers)
        self._response = self._connection.getresponse()
        if self._response.status != 200:
            raise AssertionError(f"/api/events returned {self._response.status}")
        if self._connection.sock is not None:
            self._connection.sock.settimeout(None)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Shut the socket down first, so the reader thread sees the end of the stream and stops.
        if self._connection.sock is not None:
            with contextlib.suppress(OSError):
                self._connection.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=SSE_OPEN_TIMEOUT_S)
        self._connection.close()

    def _read(self) -> None:
        kind = ""
        try:
            for raw in self._response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("event: "):
                    kind = line[len("event: ") :]
                elif line.startswith("data: "):
                    event = json.loads(line[len("data: ") :])
                    assert event["kind"] == kind, f"SSE event line {kind} but data {event['kind']}"
                    self.events.put(event)
        except (OSError, ValueError):
            return

    def wait_for(self, kind: str, timeout_s: float) -> list[dict[str, Any]]:
        """Return every event read until the first one of `kind`, including it."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                kinds = [event["kind"] for event in seen]
                raise TimeoutError(f"no {kind} event within {timeout_s} s; got {kinds}")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            seen.append(event)
            if event["kind"] == kind:
                return seen


def get_json(http_port: int, path: str, token: str | None) -> tuple[int, Any]:
    """GET `path` from the node; return the status and the parsed body (None unless JSON)."""
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def wait_for_cdr(http_port: int, call_id: str, token: str, timeout_s: float) -> dict[str, Any]:
    """Poll `GET /api/cdrs/{call_id}` until the recorder has written the call's row.

    The row is written by a worker thread after `call.ended`, which no event reports.
    """
    path = f"/api/cdrs/{urllib.parse.quote(call_id, safe='')}"

    def probe() -> dict[str, Any] | None:
        status, body = get_json(http_port, path, token)
        if status == 404:
            return None
        assert status == 200, f"{path} returned {status}"
        assert isinstance(body, dict)
        return body

    return wait_until(probe, timeout_s, f"the CDR of call {call_id}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST that the webhook receiver got: its path, headers and raw body."""

    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers 204."""

    def __init__(self) -> None:
        self.deliveries: queue.Queue[Delivery] = queue.Queue()
        deliveries = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                deliveries.put(Delivery(self.path, dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=SSE_OPEN_TIMEOUT_S)

    def wait_for(self, kind: str, call_id: str, timeout_s: float) -> list[Delivery]:
        """Return the deliveries about `call_id` until the first one of `kind`, including it."""
        seen: list[Delivery] = []
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind} delivery for the call within {timeout_s} s")
            try:
                delivery = self.deliveries.get(timeout=remaining)
            except queue.Empty:
                continue
            event = json.loads(delivery.body)
            if event["call_id"] != call_id:
                continue
            seen.append(delivery)
            if event["kind"] == kind:
                return seen
