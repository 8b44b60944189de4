"""The node's HTTP API: health check and queue counters (signaling mounts its own routes)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

logger = logging.getLogger("api")

Readiness = Callable[[], dict[str, bool]]
READINESS_KEY: web.AppKey[Readiness] = web.AppKey("readiness")


async def _healthz(request: web.Request) -> web.Response:
    """200 when every component reports ready, 503 with the list otherwise."""
    components = request.app[READINESS_KEY]()
    ready = all(components.values())
    body = {"status": "ok" if ready else "starting", "components": components}
    return web.json_response(body, status=200 if ready else 503)


def create_app(readiness: Readiness) -> web.Application:
    """Build the aiohttp application; `readiness` reports each component's state."""
    app = web.Application(client_max_size=64 * 1024)
    app[READINESS_KEY] = readiness
    app.router.add_get("/healthz", _healthz)
    return app


QueueCounters = Callable[[], dict[str, dict[str, int]]]
QUEUE_COUNTERS_KEY: web.AppKey[QueueCounters] = web.AppKey("queue_counters")


async def _queues(request: web.Request) -> web.Response:
    """Counts per queue since the node started; no caller data."""
    return web.json_response({"queues": request.app[QUEUE_COUNTERS_KEY]()})


def add_queue_counters(app: web.Application, counters: QueueCounters) -> None:
    """Serve `GET /api/queues` with this node's queue counters."""
    app[QUEUE_COUNTERS_KEY] = counters
    app.router.add_get("/api/queues", _queues)
