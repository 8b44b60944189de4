"""What the nodes sharing one Redis tell each other for cross-node bridging.

Two kinds of records, next to the ACD's keys (same prefix):

    sipnode:<acd node id>  string  "host port" of the node's SIP listener, with a TTL
                                   that the node refreshes while it runs
    card:<call id>         string  JSON `CallerCard`: the caller's context for an
                                   agent's incoming-call view, while the caller waits on its node

A caller card is caller data (number, recognized words), so it lives only in
Redis and in the offer sent to the agent's page, never in log text. The card
expires after `CARD_TTL_S` in case its node dies without deleting it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from signaling.webrtc.protocol import Incoming

logger = logging.getLogger("queues")

CARD_TTL_S = 86_400
MAX_CARD_BYTES = 64_000


@dataclass(frozen=True, slots=True)
class CallerCard:
    """A waiting caller's context, as the agent's incoming-call view shows it.

    `node_id` is the ACD node that has the caller's leg; `joined_at` is on
    the ACD clock (Unix seconds, which every node shares).
    """

    node_id: str
    caller: str
    called: str
    ivr_path: tuple[str, ...]
    words: str
    intent: str
    priority: int
    priority_reason: str
    joined_at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CallerCard:
        """Parse `to_json` output; raises ValueError for anything else."""
        if len(text) > MAX_CARD_BYTES:
            raise ValueError(f"caller card longer than {MAX_CARD_BYTES} bytes")
        try:
            data: dict[str, Any] = json.loads(text)
            return cls(
                node_id=str(data["node_id"]),
                caller=str(data["caller"]),
                called=str(data["called"]),
                ivr_path=tuple(str(step) for step in data["ivr_path"]),
                words=str(data["words"]),
                intent=str(data["intent"]),
                priority=int(data["priority"]),
                priority_reason=str(data["priority_reason"]),
                joined_at=float(data["joined_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid caller card: {exc}") from None

    def incoming(self, ring_id: str, queue: str, now: float) -> Incoming:
        """Return the offer message for an agent's page, ringing as `ring_id` at `now`."""
        return Incoming(
            call_id=ring_id,
            caller=self.caller,
            called=self.called,
            queue=queue,
            ivr_path=self.ivr_path,
            words=self.words,
            intent=self.intent,
            priority=self.priority,
            waiting_s=round(max(0.0, now - self.joined_at), 1),
            priority_reason=self.priority_reason,
        )


class NodeDirectory:
    """Node SIP addresses and caller cards in Redis (a `redis.asyncio` client, decoded replies)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    async def publish_node(self, node_id: str, host: str, port: int, ttl_s: float) -> None:
        """Store the node's SIP address for `ttl_s` seconds; call again before it ends."""
        await self._client.set(
            self._key("sipnode", node_id), f"{host} {port}", px=round(ttl_s * 1000)
        )

    async def remove_node(self, node_id: str) -> None:
        await self._client.delete(self._key("sipnode", node_id))

    async def node_address(self, node_id: str) -> tuple[str, int] | None:
        """Return the SIP host and port of a live node, or None when it has not refreshed."""
        value = await self._client.get(self._key("sipnode", node_id))
        if not value:
            return None
        host, _, port = str(value).rpartition(" ")
        try:
            return host, int(port)
        except ValueError:
            logger.warning("node %s: invalid SIP address record in Redis", node_id)
            return None

    async def put_caller(self, call_id: str, card: CallerCard) -> None:
        await self._client.set(self._key("card", call_id), card.to_json(), ex=CARD_TTL_S)

    async def get_caller(self, call_id: str) -> CallerCard | None:
        """Return the call's card, or None when the caller waits on no node or it is unreadable."""
        value = await self._client.get(self._key("card", call_id))
        if value is None:
            return None
        try:
            return CallerCard.from_json(str(value))
        except ValueError as exc:
            logger.warning("call %s: %s", call_id, exc)
            return None

    async def remove_caller(self, call_id: str) -> None:
        await self._client.delete(self._key("card", call_id))
