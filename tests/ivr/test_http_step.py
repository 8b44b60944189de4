"""The http step against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from ivr.events import EventKind
from tests.ivr.helpers import flow_from_text, run_flow


@dataclass
class Crm:
    base: str = ""
    calls: dict[str, int] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def crm() -> AsyncIterator[Crm]:
    state = Crm()

    def count(name: str) -> int:
        state.calls[name] = state.calls.get(name, 0) + 1
        return state.calls[name]

    async def order(request: web.Request) -> web.Response:
        count("order")
        number = request.match_info["number"]
        if number == "404":
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(
            {"order": {"id": number, "status": "shipped", "items": [{"name": "lamp"}]}}
        )

    async def slow(request: web.Request) -> web.Response:
        count("slow")
        await state.release.wait()
        return web.json_response({"status": "late"})

    async def flaky(request: web.Request) -> web.Response:
        attempt = count("flaky")
        if attempt < 3:
            return web.Response(status=503 if attempt == 1 else 429)
        return web.json_response({"status": "recovered"})

    async def garbage(request: web.Request) -> web.Response:
        count("garbage")
        return web.Response(text="{not json", content_type="application/json")

    async def echo(request: web.Request) -> web.Response:
        count("echo")
        body = await request.json()
        return web.json_response({"got": body, "path": request.raw_path})

    app = web.Application()
    app.router.add_get("/orders/{number}", order)
    app.router.add_get("/slow", slow)
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/garbage", garbage)
    app.router.add_post("/echo/{rest:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    site = web.SockSite(runner, listener)
    await site.start()
    state.base = f"http://127.0.0.1:{port}"
    yield state
    state.release.set()
    await runner.cleanup()


def _flow(url: str, extra: str = "") -> str:
    return (
        "flow: t\nvariables: {order_number: '12345'}\nsteps:\n"
        f"  lookup:\n    type: http\n    url: '{url}'\n    timeout_s: 0.5\n    retries: 2\n"
        f"    backoff_s: 0.01\n    on_error: fallback\n{extra}"
        "  ok: {type: say, text: 'Status {{ status }}.', next: bye}\n"
        "  fallback: {type: say, text: 'Lookup failed.', next: bye}\n"
        "  bye: {type: hangup}\n"
    )


async def test_http_saves_response_fields(crm: Crm) -> None:
    flow = flow_from_text(
        _flow(
            crm.base + "/orders/{{ order_number }}",
            "    save: {status: order.status, first_item: order.items.0.name}\n",
        )
    )
    run = await run_flow(flow, [])
    assert run.result.path == ["lookup", "ok", "bye"]
    assert run.result.variables["status"] == "shipped"
    assert run.result.variables["first_item"] == "lamp"
    assert run.result.prompts == ["Status shipped."]


async def test_http_timeout_falls_back(crm: Crm) -> None:
    flow = flow_from_text(_flow(crm.base + "/slow", "    save: {status: status}\n"))
    run = await run_flow(flow, [])
    assert run.result.path == ["lookup", "fallback", "bye"]
    assert run.result.variables["http_error"] == "request timed out"
    assert crm.calls["slow"] == 3


async def test_http_retries_503_and_429(crm: Crm) -> None:
    flow = flow_from_text(_flow(crm.base + "/flaky", "    save: {status: status}\n"))
    run = await run_flow(flow, [])
    assert run.result.variables["status"] == "recovered"
    assert crm.calls["flaky"] == 3
    event = run.of_kind(EventKind.HTTP_REQUEST)[0]
    assert event.payload["attempts"] == 3
    assert event.payload["ok"] is True


async def test_http_bad_json_is_not_retried(crm: Crm) -> None:
    flow = flow_from_text(_flow(crm.base + "/garbage", "    save: {status: status}\n"))
    run = await run_flow(flow, [])
    assert run.result.path == ["lookup", "fallback", "bye"]
    assert run.result.variables["http_error"] == "response is not valid JSON"
    assert crm.calls["garbage"] == 1


async def test_http_client_error_falls_back(crm: Crm) -> None:
    flow = flow_from_text(_flow(crm.base + "/orders/404", "    save: {status: order.status}\n"))
    run = await run_flow(flow, [])
    assert run.result.path == ["lookup", "fallback", "bye"]
    assert run.result.variables["http_error"] == "client error 404"
    assert crm.calls["order"] == 1


async def test_http_missing_field_falls_back(crm: Crm) -> None:
    flow = flow_from_text(_flow(crm.base + "/orders/7", "    save: {status: order.missing}\n"))
    run = await run_flow(flow, [])
    assert run.result.path == ["lookup", "fallback", "bye"]


async def test_http_connection_refused_falls_back() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    flow = flow_from_text(_flow(f"http://127.0.0.1:{port}/x", "    save: {status: status}\n"))
    run = await run_flow(flow, [])
    assert run.result.path == ["lookup", "fallback", "bye"]
    assert str(run.result.variables["http_error"]).startswith("request failed")


async def test_http_posts_json_and_quotes_url(crm: Crm) -> None:
    flow = flow_from_text(
        "flow: t\nvariables: {who: '../a b', n: 7}\nsteps:\n"
        f"  post:\n    type: http\n    method: POST\n    url: '{crm.base}/echo/{{{{ who }}}}'\n"
        "    json: {number: '{{ n }}', note: 'caller {{ who }}'}\n"
        "    save: {number: got.number, note: got.note, path: path}\n    on_error: bye\n"
        "  bye: {type: hangup}\n"
    )
    async with aiohttp.ClientSession() as http:
        run = await run_flow(flow, [], http=http)
    assert run.result.variables["number"] == 7
    assert run.result.variables["note"] == "caller ../a b"
    assert run.result.variables["path"] == "/echo/..%2Fa%20b"
