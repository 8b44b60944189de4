"""Relaying ACD events between nodes over Redis pub/sub.

Each node publishes the events of its own bus on `<prefix>events` and receives the events of
other nodes. By default it republishes them on its own bus. Given `deliver`, it passes them
with their origin node to that function instead and keeps its bus for its own events. So the node
holding a caller's leg hears that an agent on another node was offered or answered it, and
a wallboard on any node sees every queue. A node never hears its own events back. The IVR
context in an offer is not relayed: only the agent's node needs it, and it stays there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
from collections.abc import Callable
from typing import Any

from acd import events as ev
from acd.model import AgentState, Offer, OfferKind
from acd.service import Acd
from acd.store.redis import RedisStore
from lifecycle.tasks import cancel_and_wait

log = logging.getLogger("queues")

EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        ev.CallerJoined,
        ev.PositionChanged,
        ev.CallerJumped,
        ev.CallerOffered,
        ev.CallerAnswered,
        ev.CallerLeft,
        ev.CallbackRequested,
        ev.OfferReturned,
        ev.AgentStateChanged,
    )
}
CLOSE_TIMEOUT_S = 5.0


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Offer):
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        fields["context"] = {}
        return fields
    return value


def encode_event(event: ev.AcdEvent, origin: str) -> str:
    """Encode an event as JSON, without the IVR context of an offer."""
    fields = {f.name: _plain(getattr(event, f.name)) for f in dataclasses.fields(event)}
    return json.dumps({"origin": origin, "type": type(event).__name__, "fields": fields})


def decode_event(text: str) -> tuple[str, ev.AcdEvent]:
    """Decode `encode_event` output; raises ValueError for anything else."""
    try:
        data = json.loads(text)
        cls = EVENT_TYPES[data["type"]]
        fields = dict(data["fields"])
        if "offer" in fields:
            offer = dict(fields["offer"])
            offer["kind"] = OfferKind(offer["kind"])
            fields["offer"] = Offer(**offer)
        for name in ("old", "new"):
            if name in fields:
                fields[name] = AgentState(fields[name])
        event: ev.AcdEvent = cls(**fields)
        return str(data["origin"]), event
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"invalid relayed ACD event: {exc}") from None


class EventRelay:
    """Link between one node's event bus and the other nodes' buses, through Redis."""

    def __init__(
        self,
        acd: Acd,
        store: RedisStore,
        deliver: Callable[[str, ev.AcdEvent], None] | None = None,
    ) -> None:
        self.acd = acd
        self.store = store
        self.deliver = deliver
        self.channel = store.prefix + "events"
        self._injecting = False
        self._outgoing: asyncio.Queue[str] = asyncio.Queue(maxsize=10_000)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._unlisten = acd.events.listen(self._on_local)
        self.dropped = 0

    def _on_local(self, event: ev.AcdEvent) -> None:
        if self._injecting:
            return
        if self._outgoing.full():
            self.dropped += 1
            if self.dropped == 1:
                log.warning("node %s: event relay is behind, dropping events", self.acd.node_id)
            return
        self._outgoing.put_nowait(encode_event(event, self.acd.node_id))

    async def start(self) -> None:
        """Subscribe first, so that no event published after `start()` returns is missed."""
        pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.channel)
        self._tasks = [
            asyncio.create_task(self._send(), name=f"acd-relay-send-{self.acd.node_id}"),
            asyncio.create_task(self._receive(pubsub), name=f"acd-relay-recv-{self.acd.node_id}"),
        ]

    async def close(self) -> None:
        self._closing = True
        self._unlisten()
        # NOTE: with redis-py 8.2 on Python 3.11 a cancelled task was seen to keep running
        # after a pub/sub read, so the loops also check `_closing`, and `cancel_and_wait`
        # cancels again and stops waiting after CLOSE_TIMEOUT_S.
        pending = await cancel_and_wait(self._tasks, CLOSE_TIMEOUT_S)
        if pending:
            log.warning(
                "ACD relay: %d tasks did not stop within %.0f s", len(pending), CLOSE_TIMEOUT_S
            )
        self._tasks = []

    async def _send(self) -> None:
        while not self._closing:
            text = await self._outgoing.get()
            try:
                await self.store.client.publish(self.channel, text)
            except Exception:
                log.exception("node %s: relaying an event failed", self.acd.node_id)

    def _deliver(self, origin: str, event: ev.AcdEvent) -> None:
        assert self.deliver is not None
        try:
            self.deliver(origin, event)
        except Exception:
            log.exception(
                "node %s: handling a relayed %s failed", self.acd.node_id, type(event).__name__
            )

    async def _receive(self, pubsub: Any) -> None:
        try:
            while not self._closing:
                message = await pubsub.get_message(timeout=0.5)
                if message is None:
                    continue
                try:
                    origin, event = decode_event(str(message["data"]))
                except ValueError as exc:
                    log.warning("node %s: %s", self.acd.node_id, exc)
                    continue
                if origin == self.acd.node_id:
                    continue
                if self.deliver is not None:
                    self._deliver(origin, event)
                    continue
                self._injecting = True
                try:
                    self.acd.events.publish(event)
                finally:
                    self._injecting = False
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
