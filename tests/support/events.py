"""A test node's live events, read from its `/api/events/ws` WebSocket in a background task."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp

from tests.support.node import RunningNode


class EventSocket:
    """The node's events of `kinds` (a comma-separated filter such as `call.*`), in arrival order.

    Use it as an async context manager, or call `open` and `close`. Open it
    before the call starts, so that no event is missed. `token` is the node's
    API token, sent as a bearer token when given.
    """

    def __init__(self, node: RunningNode, kinds: str, token: str | None = None) -> None:
        self.url = f"http://127.0.0.1:{node.http_port}/api/events/ws?kinds={kinds}"
        self.events: list[dict[str, Any]] = []
        self._headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        self._changed = asyncio.Condition()
        self._http: aiohttp.ClientSession | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventSocket:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        self._http = aiohttp.ClientSession()
        socket = await self._http.ws_connect(self.url, headers=self._headers)
        self._reader = asyncio.create_task(self._read(socket))

    async def close(self) -> None:
        if self._reader is not None:
            # A reader that failed only leaves events out, which the waits report.
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def _read(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        async for message in socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            async with self._changed:
                self.events.append(json.loads(message.data))
                self._changed.notify_all()

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["kind"] == kind]

    async def wait(self, kind: str, timeout_s: float, count: int = 1) -> list[dict[str, Any]]:
        """Wait until `count` events of `kind` arrived and return them all.

        Raises TimeoutError after `timeout_s`.
        """
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.of_kind(kind)) >= count), timeout_s
            )
        return self.of_kind(kind)

    async def wait_change(self, timeout_s: float) -> None:
        """Wait until the next event arrives or `timeout_s` passes."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout_s)
