"""Bridging a caller waiting on one node to an agent logged in on another.

Theory of operation. Nodes share one Redis (the ACD store) and a cluster
secret. Each node keeps its SIP address in the `NodeDirectory` under its
ACD node id, refreshed well within its TTL. The node that has a caller's
leg (node A) writes the caller's `CallerCard` when the caller starts
waiting (the IVR handed it over) and deletes it when the caller stops
waiting, bridged or not.

The ACD on the agent's node (node B) offers it a caller of node A like any
other. `CrossNode.ring` then, under the agent's lock:

1. waits until node A has the caller waiting: its card exists, node A's address
   is live and the entry is still offered to this agent (bounded by the
   offer's lease);
2. rings the agent's page with the card's context, and withdraws the ring
   as soon as the caller stops waiting (hung up, answered elsewhere, or
   node A died and a reaper closed out its callers).

When the agent answers, node B places a SIP call to node A
(`SipEndpoint.place_call`, one RTP leg of node B's pool) with a signed
`BRIDGE_HEADER` (`voxgate.bridgetoken`). Node A's SIP handler verifies it
(403 otherwise) and answers. Node B then claims the caller with
`Acd.answer_offer`, which succeeds once per caller, so a redelivered offer
never connects twice. Node A waits for that claim in the store
(`wait_claimed`) before it hands the new leg to
`ContactCenter.connect_remote`, which bridges it to the caller exactly as a
local agent's leg. So a bridge INVITE that fails leaves the caller
unclaimed and waiting, and a claim that fails (the lease ran out) makes
node B hang up the answered leg. Node B bridges the agent's WebRTC leg with
its SIP leg. A hangup anywhere ends all legs: the
caller's hangup makes node A send BYE, the agent's hangup makes node B send
BYE, and a BYE ends the other side's bridge. Node B ends the agent's call in
the ACD (wrap-up); node A leaves the agent alone.

An agent's blind transfer on node B becomes a REFER in the bridge dialog
(`transfer_uri`), and node A runs `ContactCenter.transfer` for its caller,
so the caller is requeued or referred where its leg is.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from acd.model import EntryStatus, Offer
from media.leg import MediaLeg
from media.mixer import bridge
from media.rtp_session import RtpPortPool, RtpSession, RtpSessionConfig
from signaling import sdp
from signaling.sip.endpoint import InboundCall, OutboundCall, SipEndpoint
from signaling.sip.errors import CallEnded, SipSyntaxError, SipUsageError
from signaling.sip.uri import parse_sip_uri
from signaling.webrtc.call import WebRtcCall
from signaling.webrtc.protocol import ErrorCode, TransferKind
from voxgate.bridgetoken import BRIDGE_HEADER, BridgeClaim, sign_bridge, verify_bridge
from voxgate.directory import CallerCard, NodeDirectory
from voxgate.logs import call_id_var
from voxgate.transfer import TransferError

if TYPE_CHECKING:
    from voxgate.contact import ContactCenter, _Waiting

logger = logging.getLogger("queues")

RING_MARGIN_S = 1.0
WATCH_EVERY_S = 0.25
BRIDGE_USER = "voxgate-bridge"
# RFC 4028 session timer of a bridge call (the minimum that nodes accept by
# default), so a node that dies mid-call loses its peer's legs within it.
SESSION_EXPIRES_S = 90
# Refer-To of a transfer inside a bridge dialog: the target percent-encoded as
# the user, a host that never resolves, and the kind as a parameter.
TRANSFER_HOST = "voxgate.invalid"
TRANSFER_PARAM = "vg-transfer"
# How long the caller's node waits, after answering a bridge INVITE, for the
# agent's node to claim the caller in the store, and how often it looks.
CLAIM_TIMEOUT_S = 5.0
CLAIM_POLL_S = 0.05
# How long a bridge that the caller's node ended waits for a transfer in flight to report.
TRANSFER_SETTLE_S = 5.0
MAX_IVR_PATH = 32
MAX_WORDS = 2000
_session_ids = itertools.count(secrets.randbelow(1 << 30))


@dataclass(frozen=True, slots=True)
class CrossNodeConfig:
    """Cross-node bridging of one node.

    `secret` signs and checks bridge INVITEs (shared by every node).
    `sip_host` is the address other nodes send those INVITEs to, and
    `address_ttl_s` how long its directory record lives without a refresh.
    `rtp_host` and `rtp_advertised_address` are the bind and SDP addresses
    of the RTP legs this node places. Times are in seconds.
    """

    secret: bytes
    sip_host: str
    rtp_host: str
    rtp_advertised_address: str
    token_ttl_s: float = 30.0
    address_ttl_s: float = 10.0
    invite_timeout_s: float = 15.0


class SipAgentSide:
    """A bridge INVITE's leg on the caller's node, shaped like an agent's WebRTC call for
    `ContactCenter._talk`: `transport` carries the audio, `ended` is set when the SIP call
    ends, and `hangup` sends BYE."""

    def __init__(self, call: InboundCall, transport: RtpSession) -> None:
        self.call_id = call.call_id
        self.transport = transport
        self.ended = asyncio.Event()
        self._call = call

    async def hangup(self, reason: str = "") -> None:
        await self._call.hangup()
        self.ended.set()


def transfer_uri(kind: TransferKind, target: str) -> str:
    """Return the Refer-To URI that asks the caller's node for a transfer to `target`."""
    return f"sip:{quote(target, safe='')}@{TRANSFER_HOST};{TRANSFER_PARAM}={kind.value}"


def parse_transfer_uri(text: str) -> tuple[TransferKind, str]:
    """Return the kind and target of a `transfer_uri`; raises ValueError for anything else."""
    try:
        uri = parse_sip_uri(text)
    except SipSyntaxError as exc:
        raise ValueError(f"invalid transfer URI: {exc}") from None
    if uri.host != TRANSFER_HOST or not uri.user:
        raise ValueError("not a transfer URI of another node")
    kind = TransferKind(uri.params.get(TRANSFER_PARAM) or "")
    return kind, unquote(uri.user)


def remote_transfer_handler(
    center: ContactCenter, agent_call_id: str
) -> Callable[[str], Awaitable[bool]]:
    """Return the REFER handler of a bridge leg on the caller's node.

    It transfers the caller bridged to the leg `agent_call_id` and returns
    True once done, which the SIP stack reports to the agent's node.
    """

    async def on_refer(target_uri: str) -> bool:
        try:
            kind, target = parse_transfer_uri(target_uri)
        except ValueError as exc:
            logger.info("call %s: REFER in a bridge rejected: %s", agent_call_id, exc)
            return False
        try:
            await center.transfer(agent_call_id, kind, target)
        except TransferError as exc:
            logger.info("call %s: transfer for another node not done: %s", agent_call_id, exc)
            return False
        return True

    return on_refer


def caller_card(waiting: _Waiting, node_id: str) -> CallerCard:
    """Return the context of a waiting caller that an agent's page shows."""
    result = waiting.result
    variables = result.variables
    words = ""
    if variables.get("last_input_mode") == "speech":
        words = str(variables.get("last_input") or "")[:MAX_WORDS]
    request = result.queue_request
    return CallerCard(
        node_id=node_id,
        caller=waiting.leg.caller,
        called=waiting.leg.called,
        ivr_path=tuple(result.path[-MAX_IVR_PATH:]),
        words=words,
        intent=str(variables.get("intent") or ""),
        priority=request.priority if request is not None else 0,
        priority_reason=request.shown_reason if request is not None else "",
        joined_at=waiting.joined_at,
    )


class CrossNode:
    """Cross-node bridging for one node: its directory record, cards, rings and bridge legs."""

    def __init__(
        self,
        center: ContactCenter,
        directory: NodeDirectory,
        endpoint: SipEndpoint,
        port_pool: RtpPortPool,
        config: CrossNodeConfig,
    ) -> None:
        self._center = center
        self._directory = directory
        self._endpoint = endpoint
        self._pool = port_pool
        self._config = config
        self._node_id = center.acd.node_id
        self._refresh: asyncio.Task[None] | None = None
        # Bridge calls to callers' nodes by the agent's WebRTC call id, while bridged.
        self._bridges: dict[str, OutboundCall] = {}
        self._transferring: set[str] = set()

    # -- lifetime -------------------------------------------------------------

    async def start(self) -> None:
        """Publish this node's SIP address and keep refreshing it until `close`."""
        await self._publish()
        self._refresh = asyncio.create_task(self._keep_published(), name="xnode-address")

    async def close(self) -> None:
        """Stop refreshing and delete this node's address, so no node sends it more bridges."""
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)
            self._refresh = None
        try:
            await self._directory.remove_node(self._node_id)
        except Exception as exc:
            logger.warning("node %s: SIP address not removed from Redis: %s", self._node_id, exc)

    async def _publish(self) -> None:
        await self._directory.publish_node(
            self._node_id, self._config.sip_host, self._endpoint.port, self._config.address_ttl_s
        )

    async def _keep_published(self) -> None:
        while True:
            await asyncio.sleep(self._config.address_ttl_s / 3)
            try:
                await self._publish()
            except Exception as exc:
                logger.warning("node %s: SIP address not refreshed: %s", self._node_id, exc)

    # -- the caller's node --------------------------------------------------

    async def caller_waiting(self, waiting: _Waiting) -> None:
        """Write the card of a caller that now waits in this node's queue."""
        try:
            card = caller_card(waiting, self._node_id)
            await self._directory.put_caller(waiting.leg.call_id, card)
        except Exception as exc:
            logger.warning("call %s: caller card not written: %s", waiting.leg.call_id, exc)

    async def caller_gone(self, call_id: str) -> None:
        """Delete the card of a caller that stopped waiting here (bridged or gone)."""
        try:
            await self._directory.remove_caller(call_id)
        except Exception as exc:
            logger.warning("call %s: caller card not removed: %s", call_id, exc)

    def check_bridge(self, header: str) -> BridgeClaim:
        """Verify a bridge INVITE's header and return its claim.

        Raises `BridgeTokenError`, which the SIP handler rejects with 403.
        """
        return verify_bridge(self._config.secret, header, time.time(), self._config.token_ttl_s)

    # -- the agent's node ---------------------------------------------------

    async def is_remote(self, offer: Offer) -> bool:
        """Return True when another node has the offered caller's leg."""
        entry = await self._center.acd.store.get_entry(offer.entry_id)
        return entry is not None and entry.owner_node not in (None, self._node_id)

    async def ring(self, offer: Offer) -> None:
        """Ring the agent for a caller held by another node, then bridge the answer to it."""
        call_id_var.set(offer.call_id)
        center = self._center
        agent_id = offer.agent_id
        async with center._lock(agent_id):
            answered = await self._ring_locked(offer)
        if answered is None:
            return
        card, call = answered
        try:
            await self._bridge_out(offer, card, call)
        finally:
            # Ends the agent's call when the caller was claimed, and only syncs
            # the agent's state when it was not (the offer was declined).
            await center._end_agent_call(agent_id, offer.call_id)

    async def _ring_locked(self, offer: Offer) -> tuple[CallerCard, WebRtcCall] | None:
        center = self._center
        agent_id = offer.agent_id
        server = center.webrtc
        card = await self._wait_held(offer)
        if card is None or server is None:
            logger.info("call %s: the caller stopped waiting before the ring", offer.call_id)
            await self._decline(offer)
            return None

        ring_id = f"x{secrets.token_hex(8)}"
        lease_s = offer.lease_until - center.acd.clock.now()
        ring_timeout = max(1.0, lease_s - RING_MARGIN_S)
        incoming = card.incoming(ring_id, offer.queue, center.acd.clock.now())
        ringing = asyncio.ensure_future(
            server.offer_call(agent_id, incoming, timeout_s=ring_timeout)
        )
        stop_watching = asyncio.Event()
        watch = asyncio.ensure_future(self._watch_ring(offer, card, stop_watching))

        try:
            await asyncio.wait({ringing, watch}, return_when=asyncio.FIRST_COMPLETED)
            if watch.done() and not ringing.done():
                logger.info("call %s: caller stopped waiting while ringing", offer.call_id)
                server.cancel_offer(ring_id, "caller left")
            call = await ringing
        finally:
            # The watcher is stopped, not cancelled, because cancelling a task in
            # the middle of a redis-py command was seen to stall for tens of seconds.
            stop_watching.set()
            await asyncio.gather(watch, return_exceptions=True)
            if not ringing.done():
                ringing.cancel()
                await asyncio.gather(ringing, return_exceptions=True)

        if call is None:
            logger.info("call %s: agent %s did not take the call", offer.call_id, agent_id)
            await self._decline(offer)
            return None
        return card, call

    async def _decline(self, offer: Offer) -> None:
        await self._center.acd.decline_offer(offer.agent_id, offer.entry_id)
        await self._center._sync_agent(offer.agent_id)

    async def _still_held(self, offer: Offer, card: CallerCard | None) -> CallerCard | None:
        """Return the caller's card while it waits on its node and the offer is valid, else None."""
        entry = await self._center.acd.store.get_entry(offer.entry_id)
        if entry is None or entry.status is not EntryStatus.OFFERED:
            return None
        if entry.agent_id != offer.agent_id or entry.owner_node is None:
            return None
        if card is None:
            card = await self._directory.get_caller(offer.call_id)
            if card is None:
                return None
        elif await self._directory.get_caller(offer.call_id) is None:
            return None
        if card.node_id != entry.owner_node:
            return None
        if await self._directory.node_address(card.node_id) is None:
            return None
        return card

    async def _wait_held(self, offer: Offer) -> CallerCard | None:
        """Wait until the caller waits on its node (its IVR handed it over) or the lease ends."""
        clock = self._center.acd.clock
        deadline = offer.lease_until - RING_MARGIN_S
        while True:
            card = await self._still_held(offer, None)
            if card is not None:
                return card
            entry = await self._center.acd.store.get_entry(offer.entry_id)
            if entry is None or entry.status is not EntryStatus.OFFERED:
                return None
            if clock.now() >= deadline:
                return None
            await asyncio.sleep(WATCH_EVERY_S)

    async def wait_claimed(
        self, call_id: str, agent_id: str, leg_ended: Callable[[], bool]
    ) -> bool:
        """Wait until `agent_id` has claimed the waiting caller `call_id` of this node.

        The agent's node claims the caller right after this node answered its
        bridge INVITE. Return False when the claim does not come within
        `CLAIM_TIMEOUT_S`, the entry stops being offered, or the bridge leg
        ends first; the caller then keeps waiting.
        """
        deadline = asyncio.get_running_loop().time() + CLAIM_TIMEOUT_S
        while not leg_ended():
            entry_id = self._center.waiting_entry_id(call_id)
            if entry_id is None:
                return False
            entry = await self._center.acd.store.get_entry(entry_id)
            if entry is None:
                return False
            if entry.status is EntryStatus.BRIDGED:
                return entry.agent_id == agent_id
            if entry.status is not EntryStatus.OFFERED or entry.agent_id != agent_id:
                return False
            if asyncio.get_running_loop().time() >= deadline:
                logger.info("call %s: agent %s did not claim the caller in time", call_id, agent_id)
                return False
            await asyncio.sleep(CLAIM_POLL_S)
        return False

    async def _watch_ring(self, offer: Offer, card: CallerCard, stop: asyncio.Event) -> None:
        """Return once the caller stops waiting on its node (the ring must stop), or on `stop`.

        The state lives in Redis and on other nodes, so it is polled. A failed
        read also stops the ring, because the caller can no longer be checked.
        """
        while not stop.is_set():
            try:
                if await self._still_held(offer, card) is None:
                    return
            except Exception as exc:
                logger.warning(
                    "call %s: caller state unreadable while ringing: %s", offer.call_id, exc
                )
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_EVERY_S)

    def bridges(self, agent_call_id: str) -> bool:
        """Return True while the agent's call `agent_call_id` is bridged to another node."""
        return agent_call_id in self._bridges

    async def transfer(self, agent_call_id: str, kind: TransferKind, target: str) -> None:
        """Ask the caller's node to blind-transfer the caller bridged to `agent_call_id`.

        Sends REFER in the bridge dialog and returns once the caller's node
        reports the transfer done. Raise `TransferError` otherwise. The
        caller's node does not say why a transfer failed, so the error is
        generic.
        """
        outbound = self._bridges.get(agent_call_id)
        if outbound is None:
            raise TransferError(
                ErrorCode.BAD_STATE, "the call is not bridged to a caller", field="call_id"
            )
        self._transferring.add(agent_call_id)
        try:
            accepted = await outbound.refer(transfer_uri(kind, target))
        except (CallEnded, SipUsageError) as exc:
            logger.info("call %s: transfer not sent to the caller's node: %s", agent_call_id, exc)
            accepted = False
        finally:
            self._transferring.discard(agent_call_id)
        if not accepted:
            raise TransferError(
                ErrorCode.BAD_STATE, "the caller's node did not transfer the caller", field="target"
            )

    async def _bridge_out(self, offer: Offer, card: CallerCard, agent_call: WebRtcCall) -> None:
        """Call the caller's node and bridge the agent to that call until one side ends."""
        call_id = offer.call_id
        address = await self._directory.node_address(card.node_id)
        if address is None:
            logger.warning("call %s: the caller's node has no live SIP address", call_id)
            await agent_call.hangup("caller left")
            return
        try:
            session = await RtpSession.open_from_pool(
                self._pool,
                RtpSessionConfig(
                    codec_name="PCMU", payload_type=0, telephone_event_payload_type=101
                ),
                local_host=self._config.rtp_host,
                call_id=call_id,
            )
        except (RuntimeError, OSError) as exc:
            logger.warning("call %s: no RTP port for the bridge: %s", call_id, exc)
            await agent_call.hangup("no media port")
            return
        agent_leg = MediaLeg(agent_call.transport, call_id=agent_call.call_id)
        node_leg = MediaLeg(session, call_id=call_id)
        outbound: OutboundCall | None = None
        try:
            outbound = await self._invite(offer, card, address, session)
            if outbound is None:
                await agent_call.hangup("caller left")
                async with self._center._lock(offer.agent_id):
                    await self._decline(offer)
                return
            # The caller's node connects the caller only once this claim shows in
            # the store, so a failed INVITE never strands a claimed caller.
            if not await self._center.acd.answer_offer(offer.agent_id, offer.entry_id):
                logger.info("call %s: the answer came after the offer ended", call_id)
                await agent_call.hangup("offer expired")
                return
            mixer = bridge(node_leg, agent_leg, call_id=call_id)
            self._bridges[agent_call.call_id] = outbound
            logger.info(
                "call %s: agent %s bridged through node %s", call_id, offer.agent_id, card.node_id
            )
            node_ended = asyncio.ensure_future(outbound.wait_ended())
            agent_ended = asyncio.ensure_future(agent_call.ended.wait())
            try:
                watched: set[asyncio.Future[object]] = {node_ended, agent_ended}  # type: ignore[arg-type]
                done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                if node_ended in done and agent_call.call_id in self._transferring:
                    # The caller's node ends the bridge right after it reports the
                    # transfer, so let the transfer end the agent's leg itself.
                    await asyncio.wait({agent_ended}, timeout=TRANSFER_SETTLE_S)
                side = "caller" if node_ended in done else "agent"
                logger.info("call %s: %s hung up, ending both legs", call_id, side)
            finally:
                for task in (node_ended, agent_ended):
                    task.cancel()
                mixer.close()
        finally:
            self._bridges.pop(agent_call.call_id, None)
            if outbound is not None:
                await outbound.hangup()
            await agent_call.hangup("caller hung up")
            await agent_leg.close()
            await node_leg.close()
            await session.close()

    async def _invite(
        self, offer: Offer, card: CallerCard, address: tuple[str, int], session: RtpSession
    ) -> OutboundCall | None:
        """Place the bridge INVITE and point the RTP leg at the answer; None when it failed."""
        host, port = address
        host_part = f"[{host}]" if ":" in host else host
        sdp_offer = sdp.create_audio_offer(
            (sdp.PCMU,),
            local_host=self._config.rtp_advertised_address,
            local_port=session.local_address[1],
            session_id=next(_session_ids),
            session_version=1,
        )
        claim = BridgeClaim(
            call_id=offer.call_id,
            agent_id=offer.agent_id,
            node_id=self._node_id,
            expires=int(time.time() + self._config.token_ttl_s),
        )
        try:
            outbound = await self._endpoint.place_call(
                f"sip:{BRIDGE_USER}@{host_part}:{port}",
                sdp_offer=sdp_offer,
                from_user=BRIDGE_USER,
                headers={BRIDGE_HEADER: sign_bridge(self._config.secret, claim)},
                timeout_s=self._config.invite_timeout_s,
                session_expires=SESSION_EXPIRES_S,
            )
        except (SipUsageError, CallEnded) as exc:
            logger.warning("call %s: bridge INVITE not sent: %s", offer.call_id, exc)
            return None
        try:
            answer = await outbound.wait_answered()
        except CallEnded as exc:
            logger.warning(
                "call %s: the caller's node did not bridge (%s, status %s)",
                offer.call_id,
                exc,
                outbound.status,
            )
            return None
        try:
            negotiated = sdp.accept_answer(sdp_offer, sdp.parse(answer or b""))
        except sdp.SdpError as exc:
            logger.warning("call %s: unusable SDP answer for the bridge: %s", offer.call_id, exc)
            await outbound.hangup()
            return None
        session.set_remote((negotiated.remote_host, negotiated.remote_port))
        return outbound
