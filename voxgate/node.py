"""One VoxGate node: SIP, RTP, IVR and HTTP wired together in one process.

`run_node` starts every component, reports readiness on `GET /healthz`,
waits for SIGINT or SIGTERM, then stops in reverse order: the SIP endpoint
sends BYE to every call, which ends each call's flow and frees its RTP
port, and the HTTP listener closes last.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiohttp import web

from ivr.registry import FlowRegistry
from media.rtp_session import RtpPortPool
from media.tts import EspeakSynthesizer, TtsConfig
from signaling.sip.endpoint import SipConfig, SipEndpoint
from voxgate.calls import SipCallHandler
from voxgate.http import create_app
from voxgate.settings import Settings

logger = logging.getLogger("voxgate")

FLOW_WATCH_INTERVAL_S = 2.0


class Node:
    """The components of one node and their start/stop order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ready = {"sip": False, "rtp": False, "ivr": False}
        self._sip: SipEndpoint | None = None
        self._http_runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.http_port = 0

    def readiness(self) -> dict[str, bool]:
        return dict(self._ready)

    async def start(self) -> None:
        settings = self.settings
        await self._start_http()

        flows = FlowRegistry(settings.ivr.flows_dir)
        for path, error in flows.errors.items():
            logger.error("flow file %s is invalid and was skipped: %s", path, error)
        if not flows.names:
            raise RuntimeError(f"no valid flow in {settings.ivr.flows_dir}")
        if flows.get(settings.ivr.default_flow) is None:
            logger.warning("default flow %r not found", settings.ivr.default_flow)
        self._own(asyncio.ensure_future(flows.watch(FLOW_WATCH_INTERVAL_S)))
        synthesizer = EspeakSynthesizer(TtsConfig(cache_dir=settings.ivr.prompt_cache_dir))
        self._ready["ivr"] = True

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
        )
        self._sip = SipEndpoint(
            SipConfig(
                host=settings.sip.host, port=settings.sip.port, user_agent=settings.sip.user_agent
            ),
            handler,
        )
        await self._sip.start()
        self._ready["sip"] = True
        logger.info(
            "node %s ready: sip %s:%d, rtp %d-%d, http %s:%d",
            settings.node.id,
            settings.sip.host,
            self._sip.port,
            settings.rtp.port_low,
            settings.rtp.port_high,
            settings.http.host,
            self.http_port,
        )

    async def _start_http(self) -> None:
        runner = web.AppRunner(create_app(self.readiness), handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.http.host, self.settings.http.port)
        await site.start()
        self._http_runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.settings.http.port

    def _own(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        started = time.monotonic()
        for name in self._ready:
            self._ready[name] = False
        if self._sip is not None:
            await self._sip.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http_runner is not None:
            await self._http_runner.cleanup()
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
        logger.error("node failed to start: %s", exc)
        await node.stop()
        return 1
    await stop.wait()
    logger.info("stop requested; ending calls")
    await node.stop()
    return 0
