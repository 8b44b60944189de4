"""One VoxGate node: SIP, RTP, IVR, ACD, WebRTC and HTTP wired together in one process.

`run_node` starts every component, reports readiness on `GET /healthz`,
waits for SIGINT or SIGTERM, then stops in reverse order. The SIP endpoint
sends BYE to every call, which ends each call's flow and frees its RTP
port. Then the ACD stops dispatching, and the HTTP listener closes, which
ends the browser calls and the event streams. The webhook sender and the
CDR recorder close last, so they receive the `call.ended` of those calls.

Every call event goes through one `EventHub`: the SIP and browser call
handlers publish `call.*`, their IVR sessions `ivr.*`, and the ACD's event
bus `acd.*`. The CDR recorder, the webhook sender and the event stream
routes read from it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import time
from collections.abc import Callable

from aiohttp import web

from ivr.registry import FlowRegistry
from media.asr import AsrConfig, ModelCatalog
from media.rtp_session import RtpPortPool
from media.tts import EspeakSynthesizer, Synthesizer, TtsConfig
from signaling.sip.endpoint import SipEndpoint
from signaling.webrtc.server import WebRtcServer, add_routes
from voxgate.browser_calls import BrowserCallHandler
from voxgate.callevents import CallLegEvents, EventHub, attach_acd
from voxgate.calls import SipCallHandler
from voxgate.cdrapi import add_cdr_routes
from voxgate.cdrstore import CdrConfig, CdrRecorder, CdrSchemaError
from voxgate.components import build_contact_center, sip_config, webhook_config, webrtc_config
from voxgate.contact import ContactCenter
from voxgate.eventstream import add_event_routes
from voxgate.http import add_queue_counters, create_app
from voxgate.settings import Settings
from voxgate.webhooks import WebhookSender

logger = logging.getLogger("voxgate")

FLOW_WATCH_INTERVAL_S = 2.0


class Node:
    """The components of one node and their start/stop order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ready = {"sip": False, "rtp": False, "ivr": False, "acd": False}
        self._sip: SipEndpoint | None = None
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

        await self._start_events()
        self.contact = await build_contact_center(settings, synthesizer)
        self.contact.legs = CallLegEvents(self.hub, settings.node.id)
        self._detach_acd = attach_acd(self.contact.acd.events, self.hub, settings.node.id)
        self.contact.start()
        self._ready["acd"] = True

        await self._start_http(flows, synthesizer)

        pool = RtpPortPool(settings.rtp.port_low, settings.rtp.port_high)
        self._ready["rtp"] = True

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
        )
        self._sip = SipEndpoint(sip_config(settings.sip), handler)
        await self._sip.start()
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
            add_queue_counters(app, self.contact.queue_counters)
        add_event_routes(app, self.hub, token=settings.api.token)
        if self.recorder is not None:
            add_cdr_routes(app, self.recorder, token=settings.api.token)
        if settings.webrtc.enabled:
            handler = BrowserCallHandler(
                flows=flows,
                default_flow=settings.ivr.default_flow,
                synthesizer=synthesizer,
                contact=self.contact,
                models=self._models,
                hub=self.hub,
                node_id=settings.node.id,
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

    def _own(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        started = time.monotonic()
        for name in self._ready:
            self._ready[name] = False
        if self._sip is not None:
            await self._sip.stop()
        if self.contact is not None:
            await self.contact.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http_runner is not None:
            await self._http_runner.cleanup()
        if self.webhooks is not None:
            await self.webhooks.close()
        if self.recorder is not None:
            await self.recorder.close()
        if self._detach_acd is not None:
            self._detach_acd()
        logger.info("node stopped in %.1f s", time.monotonic() - started)


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
                "choose others with --sip-port, --http-port or --rtp-ports",
                exc,
            )
        else:
            logger.error("node failed to start: %s", exc)
        await node.stop()
        return 1
    await stop.wait()
    logger.info("stop requested; ending calls")
    await node.stop()
    return 0
