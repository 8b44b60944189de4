"""The node's HTTP API: health check now; signaling, pages and events join it later."""

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
