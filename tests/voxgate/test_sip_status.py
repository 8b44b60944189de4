"""A node's OPTIONS keepalives and registrations, as `GET /api/sip` reports them."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.sip.support import SIPP, start_sipp_uas
from tests.support.node import voxgate_node
from tests.support.ports import free_udp_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.peer, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]

STATUS_TIMEOUT_S = 30.0


def sip_status(http_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/sip", timeout=5) as response:
        status: dict[str, Any] = json.loads(response.read())
        return status


async def test_pinged_trunk_states(tmp_path: Path) -> None:
    sipp = await start_sipp_uas("uas_options.xml", tmp_path)
    silent_port = free_udp_port()
    settings = {
        "sip": {
            "pings": {
                "carrier": {"target": f"sip:127.0.0.1:{sipp.port}", "interval_s": 30},
                "backup": {
                    "target": f"sip:127.0.0.1:{silent_port}",
                    "interval_s": 5,
                    "timeout_s": 1,
                },
            }
        }
    }
    try:
        with voxgate_node(tmp_path, settings) as node:

            def settled() -> dict[str, Any] | None:
                pings = sip_status(node.http_port)["pings"]
                states = {name: ping["state"] for name, ping in pings.items()}
                return (
                    pings if states == {"carrier": "reachable", "backup": "unreachable"} else None
                )

            pings = await asyncio.to_thread(wait_until, settled, STATUS_TIMEOUT_S, "ping states")
            code, log = await sipp.finish()

        assert pings["carrier"]["rtt_ms"] >= 0
        assert pings["backup"]["rtt_ms"] is None
        assert code == 0, log
    finally:
        sipp.kill()
