"""The node's HTTP API: health check, queue counters and trunk status (signaling mounts its own)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

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


CLUSTER_COUNTERS_KEY: web.AppKey[QueueCounters] = web.AppKey("cluster_counters")


async def _queues(request: web.Request) -> web.Response:
    """Return the counts per queue since the node started, of this node and of the cluster.

    The counts contain no caller data.
    """
    body = {"queues": request.app[QUEUE_COUNTERS_KEY]()}
    cluster = request.app.get(CLUSTER_COUNTERS_KEY)
    if cluster is not None:
        body["cluster"] = cluster()
    return web.json_response(body)


def add_queue_counters(
    app: web.Application, counters: QueueCounters, cluster: QueueCounters | None = None
) -> None:
    """Serve `GET /api/queues` with this node's queue counters (`queues`), and with `cluster`
    (the counts over the events of every node) when the node hears other nodes' events."""
    app[QUEUE_COUNTERS_KEY] = counters
    if cluster is not None:
        app[CLUSTER_COUNTERS_KEY] = cluster
    app.router.add_get("/api/queues", _queues)


SipStatus = Callable[[], dict[str, Any]]
SIP_STATUS_KEY: web.AppKey[SipStatus] = web.AppKey("sip_status")


async def _sip_status(request: web.Request) -> web.Response:
    """Return the state of each outbound registration and OPTIONS-pinged peer, by name."""
    return web.json_response(request.app[SIP_STATUS_KEY]())


def add_sip_status(app: web.Application, status: SipStatus) -> None:
    """Serve `GET /api/sip` with the registrations' and pings' states (no addresses)."""
    app[SIP_STATUS_KEY] = status
    app.router.add_get("/api/sip", _sip_status)
