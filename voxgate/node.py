"""One VoxGate node: SIP, RTP, IVR, ACD, WebRTC and HTTP wired together in one process.

`run_node` starts every component, reports readiness on `GET /healthz`,
waits for SIGINT or SIGTERM, then stops in reverse order.

The node binds its HTTP and SIP ports before it registers in the ACD store.
It registers by claiming its `node.id` there, which fails while a live node
of the same store holds that id, and only then starts the ACD heartbeat and
dispatch.

When the node stops, the contact center is notified first, so that its
waiting callers leave their queues with reason `node_stopped` rather than
as abandoned. The SIP endpoint sends BYE to every call, which ends each
call's flow and frees its RTP port. Then the ACD stops dispatching, and
the HTTP listener closes, which ends the browser calls and the event
streams. The webhook sender and the CDR recorder close last, so they
receive the `call.ended` of those calls.

Every call event goes through one `EventHub`: the SIP and browser call
handlers publish `call.*`, their IVR sessions `ivr.*`, and the ACD's event
bus `acd.*`. The CDR recorder, the webhook sender and the event stream
routes read from it. With a Redis store an `EventRelay` shares the ACD
events between nodes, and those of other nodes reach only the event
streams and the cluster queue counters.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from acd.events import AcdEvent
from acd.relay import EventRelay
from acd.service import NodeNameTaken
from acd.store.redis import RedisStore
from ivr.registry import FlowRegistry
from ivr.sentiment import default_analyzer
from lifecycle.tasks import STOP_TIMEOUT_S, cancel_and_wait
from media.asr import AsrConfig, ModelCatalog
from media.rtp_session import RtpPortPool
from media.rtp_sockets import RtpSocketPool
from media.tts import EspeakSynthesizer, Synthesizer, TtsConfig
from signaling.sip.endpoint import SipEndpoint
from signaling.webrtc.server import WebRtcServer, add_routes
from voxgate.browser_calls import BrowserCallHandler
from voxgate.callbackretry import RedisRetries
from voxgate.callbacks import CallbackService
from voxgate.callevents import CallLegEvents, EventHub, attach_acd, from_acd_event
from voxgate.calls import SipCallHandler
from voxgate.cdrapi import add_cdr_routes
from voxgate.cdrstore import CdrConfig, CdrRecorder, CdrSchemaError
from voxgate.components import (
    build_contact_center,
    callback_config,
    node_name,
    recording_config,
    sip_config,
    webhook_config,
    webrtc_config,
)
from voxgate.contact import ContactCenter
from voxgate.crossnode import CrossNode, CrossNodeConfig
from voxgate.directory import NodeDirectory
from voxgate.eventstream import add_event_routes
from voxgate.http import add_queue_counters, add_sip_status, create_app
from voxgate.outbound import OutboundDialer
from voxgate.queueing import warn_unknown_queues
from voxgate.recordingapi import add_recording_route
from voxgate.settings import RtpSettings, Settings
from voxgate.webhooks import WebhookSender

logger = logging.getLogger("voxgate")

FLOW_WATCH_INTERVAL_S = 2.0
GC_GEN0_THRESHOLD = 50_000


class Node:
    """The components of one node and their start/stop order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ready = {"sip": False, "rtp": False, "ivr": False, "acd": False}
        self._sip: SipEndpoint | None = None
        self._socket_pool: RtpSocketPool | None = None
        self._http_runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.http_port = 0
        self.contact: ContactCenter | None = None
        self._models: ModelCatalog | None = None
        self.webrtc: WebRtcServer | None = None
        self.hub = EventHub()
        self.recorder: CdrRecorder | None = None
        self.webhooks: WebhookSender | None = None
        self._detach_acd: Callable[[], None] | None = None
        self.crossnode: CrossNode | None = None
        self.relay: EventRelay | None = None

    def readiness(self) -> dict[str, bool]:
        return dict(self._ready)

    async def start(self) -> None:
        settings = self.settings
        flows = FlowRegistry(settings.ivr.flows_dir)
        for path, error in flows.errors.items():
            logger.error("flow file %s is invalid and was skipped: %s", path, error)
        if not flows.names:
            raise RuntimeError(f"no valid flow in {settings.ivr.flows_dir}")
        if flows.get(settings.ivr.default_flow) is None:
            logger.warning("default flow %r not found", settings.ivr.default_flow)
        loaded_flows = [flows.get(name) for name in flows.names]
        warn_unknown_queues(
            [flow for flow in loaded_flows if flow is not None], settings.acd.queues
        )
        self._own(asyncio.ensure_future(flows.watch(FLOW_WATCH_INTERVAL_S)))
        synthesizer = EspeakSynthesizer(TtsConfig(cache_dir=settings.ivr.prompt_cache_dir))
        self._models = ModelCatalog(
            AsrConfig(
                models_dir=settings.asr.models_dir,
                use_model_packages=settings.asr.use_model_packages,
            )
        )
        if not self._models.any_model():
            logger.warning(
                "no speech recognition model in %s or installed packages; speech input is off",
                settings.asr.models_dir,
            )
        self._ready["ivr"] = True
        if settings.asr.preload:
            self._ready["speech"] = False
            self._own(asyncio.create_task(self._warm_up(flows, self._models)))

        await self._start_events()
        # Opening the store writes nothing to it: the node registers in claim_name below.
        self.contact = await build_contact_center(settings, synthesizer)
        self.contact.legs = CallLegEvents(self.hub, settings.node.id)
        self._detach_acd = attach_acd(self.contact.acd.events, self.hub, settings.node.id)

        # Bind the HTTP and SIP ports before the node registers in the ACD store, so that a
        # taken port stops the start before other nodes can see this node.
        await self._start_http(flows, synthesizer)

        pool = RtpPortPool(settings.rtp.port_low, settings.rtp.port_high)
        self._socket_pool = rtp_socket_pool(settings.rtp, pool)

        handler = SipCallHandler(
            flows=flows,
            default_flow=settings.ivr.default_flow,
            synthesizer=synthesizer,
            port_pool=pool,
            rtp_host=settings.rtp.host,
            advertised_address=settings.rtp.advertised_address or settings.rtp.host,
            ring_ms=settings.sip.ring_ms,
            contact=self.contact,
            models=self._models,
            hub=self.hub,
            node_id=settings.node.id,
            recordings=recording_config(settings.recording),
            rtp_timeout_s=settings.rtp.timeout_s,
            rtp_hold_timeout_s=settings.rtp.hold_timeout_s,
            socket_pool=self._socket_pool,
        )
        self._sip = SipEndpoint(sip_config(settings.sip), handler)
        await self._sip.start()

        try:
            await self.contact.acd.claim_name(settings.node.id)
        except NodeNameTaken as exc:
            raise RuntimeError(
                f"{exc}. node.id must be unique among the nodes that share the ACD store: "
                "set another node.id in the settings file, or stop the other node. "
                f"A crashed node's id is free again {settings.acd.node_ttl_s:g} s "
                "(acd.node_ttl_s) after its last heartbeat"
            ) from exc
        self.contact.start()
        await self._start_relay(self.contact)
        self._ready["acd"] = True
        self._ready["rtp"] = True

        await self._start_cross_node(self._sip, pool)
        callbacks = callback_config(settings)
        if callbacks is not None:
            dialer = OutboundDialer(
                self._sip,
                pool,
                rtp_host=settings.rtp.host,
                advertised_address=settings.rtp.advertised_address or settings.rtp.host,
            )
            store = self.contact.acd.store
            schedule = (
                RedisRetries(store.client, store.prefix) if isinstance(store, RedisStore) else None
            )
            service = CallbackService(
                callbacks,
                self.contact.acd,
                synthesizer,
                dialer,
                self.hub,
                settings.node.id,
                schedule,
            )
            self.contact.attach_callbacks(service)
            service.start()
        self._ready["sip"] = True
        logger.info(
            "node %s ready: sip %s:%d, rtp %d-%d, http %s:%d, acd store %s",
            settings.node.id,
            settings.sip.host,
            self._sip.port,
            settings.rtp.port_low,
            settings.rtp.port_high,
            settings.http.host,
            self.http_port,
            "memory" if settings.acd.store == "memory" else "redis",
        )

    async def _start_cross_node(self, endpoint: SipEndpoint, pool: RtpPortPool) -> None:
        """Publish this node's SIP address and let the contact center bridge across nodes."""
        settings = self.settings
        contact = self.contact
        secret = settings.cluster.secret
        store = contact.acd.store if contact is not None else None
        if contact is None or secret is None or not isinstance(store, RedisStore):
            return
        config = CrossNodeConfig(
            secret=secret.encode("utf-8"),
            sip_host=settings.cluster.sip_host or settings.sip.advertised_host or settings.sip.host,
            rtp_host=settings.rtp.host,
            rtp_advertised_address=settings.rtp.advertised_address or settings.rtp.host,
            token_ttl_s=settings.cluster.token_ttl_s,
            address_ttl_s=settings.cluster.address_ttl_s,
        )
        crossnode = CrossNode(
            contact, NodeDirectory(store.client, store.prefix), endpoint, pool, config
        )
        await crossnode.start()
        contact.crossnode = crossnode
        self.crossnode = crossnode
        logger.info("node %s: cross-node bridging on", contact.acd.node_id)

    async def _start_relay(self, contact: ContactCenter) -> None:
        """Hear the ACD events of the other nodes that share the Redis store.

        They go to the live event streams, the cluster queue counters and the contact center,
        which sets an agent's page here offline when the agent logs in on another node. They
        never reach this node's CDRs, webhooks or ACD bus, because the node where an event
        happened records and sends it.
        """
        store = contact.acd.store
        if not isinstance(store, RedisStore):
            return

        def deliver(origin: str, event: AcdEvent) -> None:
            contact.on_relayed(event)
            self.hub.publish_relayed(from_acd_event(event, node_name(origin)))

        relay = EventRelay(contact.acd, store, deliver)
        await relay.start()
        self.relay = relay

    async def _start_events(self) -> None:
        """Open the CDR store and start the webhook sender, both fed by the hub."""
        settings = self.settings
        if settings.cdr.path is not None:
            recorder = CdrRecorder(
                CdrConfig(path=settings.cdr.path, node_id=settings.node.id), self.hub
            )
            try:
                await recorder.start()
            except (sqlite3.Error, CdrSchemaError) as exc:
                raise OSError(f"cannot open the CDR store {settings.cdr.path}: {exc}") from exc
            self.recorder = recorder
        else:
            logger.info("cdr.path is null: CDRs are off")
        config = webhook_config(settings.webhooks)
        if config is not None:
            self.webhooks = WebhookSender(config, self.hub)
            await self.webhooks.start()

    async def _start_http(self, flows: FlowRegistry, synthesizer: Synthesizer) -> None:
        settings = self.settings
        app = create_app(self.readiness)
        if self.contact is not None:
            # The event relay of a Redis store, started later, feeds the cluster counters.
            relayed = isinstance(self.contact.acd.store, RedisStore)
            cluster = self.contact.cluster_queue_counters if relayed else None
            add_queue_counters(app, self.contact.queue_counters, cluster)
        add_sip_status(app, self.sip_status)
        add_event_routes(app, self.hub, token=settings.api.token)
        if self.recorder is not None:
            add_cdr_routes(app, self.recorder, token=settings.api.token)
            add_recording_route(
                app, self.recorder, settings.recording.directory, token=settings.api.token
            )
        if settings.webrtc.enabled:
            handler = BrowserCallHandler(
                flows=flows,
                default_flow=settings.ivr.default_flow,
                synthesizer=synthesizer,
                contact=self.contact,
                models=self._models,
                hub=self.hub,
                node_id=settings.node.id,
                recordings=recording_config(settings.recording),
            )
            config = webrtc_config(settings.webrtc, settings.http.host, settings.http.port)
            self.webrtc = add_routes(app, config, handler)
            if self.contact is not None:
                self.contact.webrtc = self.webrtc
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.http.host, settings.http.port)
        await site.start()
        self._http_runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else settings.http.port
        if self.webrtc is not None and settings.http.port == 0:
            # The default origin names the port, known only now.
            self.webrtc.config = webrtc_config(settings.webrtc, settings.http.host, self.http_port)

    async def _warm_up(self, flows: FlowRegistry, models: ModelCatalog) -> None:
        """Load the speech models and the sentiment analyzer of the flows' languages.

        Both load lazily on a call's first spoken turn otherwise. Scoring the
        sentiment of the first Korean turn (multilingual-e5-small) then took
        1.7 s and 6.9 s in two `make demo` runs on a loaded 2-core VM. The
        loads run in the background, and `GET /healthz` reports the node as
        starting (component "speech") until they end. A failed load is
        logged and leaves speech to load on the first spoken turn.
        """
        loaded = [flows.get(name) for name in flows.names]
        languages = sorted({flow.language for flow in loaded if flow is not None})
        spoken = [language for language in languages if models.has_model(language)]
        for language in languages:
            if language not in spoken:
                models.warn_missing(language)
        started = time.monotonic()
        try:
            if not spoken:
                return
            await models.preload(spoken)
            analyzer = default_analyzer()
            for language in spoken:
                await asyncio.to_thread(analyzer.score, "hello", language)
            logger.info(
                "speech models and sentiment analyzer loaded for %s in %.1f s",
                ", ".join(spoken),
                time.monotonic() - started,
            )
        except Exception:
            logger.exception("loading the speech models and sentiment analyzer failed")
        finally:
            self._ready["speech"] = True

    def sip_status(self) -> dict[str, Any]:
        """Return the state of each registration and pinged peer (no addresses, no caller data)."""
        if self._sip is None or not self._ready.get("sip"):
            return {"registrations": {}, "pings": {}}
        registrations = {
            name: self._sip.registration_state(name) for name in self.settings.sip.registrations
        }
        pings: dict[str, dict[str, Any]] = {}
        for name in self.settings.sip.pings:
            state, rtt = self._sip.ping_state(name)
            pings[name] = {"state": state, "rtt_ms": None if rtt is None else round(rtt * 1000, 1)}
        return {"registrations": registrations, "pings": pings}

    def _own(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        started = time.monotonic()
        for name in self._ready:
            self._ready[name] = False
        if self.contact is not None:
            # Before the calls end, so that waiting callers leave as `node_stopped`.
            self.contact.begin_stop()
        if self.crossnode is not None:
            await self.crossnode.close()
        if self._sip is not None:
            await self._sip.stop()
        if self.relay is not None:
            await self.relay.close()
        if self.contact is not None:
            await self.contact.close()
        left = await cancel_and_wait(self._tasks, STOP_TIMEOUT_S)
        if left:
            logger.warning("%d node tasks did not stop", len(left))
        if self._http_runner is not None:
            await self._http_runner.cleanup()
        if self.webhooks is not None:
            await self.webhooks.close()
        if self.recorder is not None:
            await self.recorder.close()
        if self._detach_acd is not None:
            self._detach_acd()
        if self._socket_pool is not None:
            # After the SIP endpoint, whose calls have given their pairs back by now.
            self._socket_pool.close()
        logger.info("node stopped in %.1f s", time.monotonic() - started)


def port_flag(settings: Settings, error: str) -> str:
    """Name the command-line flag that moves the port an OSError's text names, if known."""
    found = re.search(r"\(\'[^']*\', (\d+)\)", error)
    port = int(found.group(1)) if found else None
    if port is not None and port == settings.http.port:
        return "--http-port"
    if port is not None and port == settings.sip.port:
        return "--sip-port"
    if port is not None and port == settings.sip.tls_port:
        return "sip.tls_port in the settings file"
    if port is not None and settings.rtp.port_low <= port <= settings.rtp.port_high + 1:
        return "--rtp-ports"
    return "--sip-port, --http-port or --rtp-ports"


def rtp_socket_pool(settings: RtpSettings, ports: RtpPortPool) -> RtpSocketPool | None:
    """Build the pool of RTP socket pairs reused between SIP calls; None when it is off.

    The pool keeps at most half the pairs of the port range, so that outbound
    and cross-node legs, which bind their own ports, still find free ones.
    """
    pairs_in_range = (settings.port_high - settings.port_low + 1) // 2
    max_idle = min(settings.socket_pool_size, pairs_in_range // 2)
    if max_idle == 0:
        return None
    logger.info(
        "rtp socket pool keeps up to %d pairs (rtp.socket_pool_size %d, range of %d pairs)",
        max_idle,
        settings.socket_pool_size,
        pairs_in_range,
    )
    return RtpSocketPool(
        ports, settings.host, max_idle=max_idle, quarantine_s=settings.socket_quarantine_s
    )


def freeze_startup_objects() -> None:
    """Collect once, then exclude every object alive after start-up from garbage collection.

    A started node has about 105,000 objects that the collector tracks
    (modules, settings, flows), and each full collection walked all of them.
    At 300 calls/s (bench/sip_load.py on a 2-core VM) one full collection
    took up to 134 ms before and 88 ms after the freeze, which stalls every
    call meanwhile. After `gc.freeze` a full collection walks only the
    objects made since start-up.

    The youngest generation is also collected after GC_GEN0_THRESHOLD
    allocations instead of 700. CPython counts allocations minus
    deallocations of tracked objects, and reference counting frees most
    objects of a call. At 300 calls/s a threshold of 10,000 cut the
    collector's CPU from about 70 to 25 µs per call, and young collections
    took up to 8 ms. With SIPp at 1,000 calls/s, after 40 s of warm-up,
    10,000 still started a young collection every 1.7 s. Each walked
    20,000-75,000 live objects, mostly BYE client transactions waiting out
    Timer K with their requests and header tuples. (Those now linger as a
    key and a deadline, see `signaling.sip.tu`, so fewer objects live.)
    Each collected nothing and took up to 29 ms, and the collector cost
    about 11 µs of CPU per call. With 50,000 the count stayed near 15,000
    and no collection ran in 100 s, and the process kept about 160,000
    tracked objects (bench/sip_load.py's server on a 2-vCPU VM). Cyclic
    garbage raises the count for good, so the collector still runs once
    about 50,000 garbage objects have piled up, and their memory stays in
    use until then.
    """
    gc.collect()
    gc.freeze()
    _, threshold1, threshold2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, threshold1, threshold2)
    logger.debug("gc froze %d start-up objects", gc.get_freeze_count())


async def run_node(settings: Settings) -> int:
    """Run a node until SIGINT or SIGTERM; returns the process exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    node = Node(settings)
    try:
        await node.start()
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, OSError):
            logger.error(
                "node failed to start: %s. If another process holds the port, "
                "choose another with %s",
                exc,
                port_flag(settings, str(exc)),
            )
        else:
            logger.error("node failed to start: %s", exc)
        await node.stop()
        return 1
    freeze_startup_objects()
    await stop.wait()
    logger.info("stop requested; ending calls")
    await node.stop()
    return 0
