"""Run the caller -> IVR -> queue -> agent journey end to end and print a JSON summary.

One `voxgate serve` node runs the journey flow (a welcome, intent "billing",
then queue "general"; the caller "vip" gets priority 7). The agent is the
real agent page in headless Chromium. Three baresip callers dial in: two
normal callers, then "vip". Only when all three wait does the agent become
available. The agent answers each offer, listens until it has heard the
caller's tone for 2 s and hangs up.

The summary comes from the node's own records: `GET /api/cdrs` for each
caller's IVR path, intent, priority, wait, agent and talk time, and
`GET /api/events` (Server-Sent Events) for the time each caller joined the
queue, which the priority check needs. Setup latencies are measured on the
way. Everything stays on loopback: as root the script re-runs itself inside
a private network namespace (`unshare -n`) that has only `lo`.

Run from the repository root: `PYTHONPATH=. python scripts/demo.py`. It
imports the journey test helpers from `tests/`, so it needs the `[test]`
extras, baresip and Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from signaling.webrtc.peer import install_host_addresses
from tests.journey.browser_agent import BrowserAgent
from tests.journey.scenario import (
    AGENT,
    AGENT_TONE_HZ,
    CALLER_TONE_HZ,
    NUMBER,
    PASSWORD,
    node_settings,
    wait_counters,
)
from tests.support.baresip import BaresipClient
from tests.support.node import REPOSITORY, RunningNode, voxgate_node
from tests.support.wav import tone, write_wav
from voxgate.settings import JumpSettings

# Caller names in dialing order. The journey flow gives "vip" priority 7.
CALLERS = ("normal1", "normal2", "vip")
PRIORITY_CALLER = "vip"
API_TOKEN = "demo-api-token-0123456789"
# The demo leaves acd.jump at its defaults, so the jump bound comes from them.
JUMP = JumpSettings()
TALK_TONE_S = 2.0
DEFAULT_TIMEOUT_S = 240.0


def demo_settings(work_dir: Path) -> dict[str, Any]:
    settings = node_settings()
    settings["cdr"] = {"path": str(work_dir / "cdr.sqlite")}
    settings["api"] = {"token": API_TOKEN}
    return settings


class EventLog:
    """Collects the node's live events from `GET /api/events` in a background task."""

    def __init__(self, base: str) -> None:
        self.url = f"{base}/api/events?kinds=acd.*,call.*"
        self.events: list[dict[str, Any]] = []
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventLog:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _read(self) -> None:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.url, headers=headers, timeout=aiohttp.ClientTimeout(total=None)) as r,
        ):
            r.raise_for_status()
            self.connected.set()
            async for raw in r.content:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    self.events.append(json.loads(line.removeprefix("data:")))

    def first_time(self, kind: str, call_id: str) -> float | None:
        for event in self.events:
            if event["kind"] == kind and event["call_id"] == call_id:
                return float(event["time"])
        return None


def dial(
    work_dir: Path, user: str, node: RunningNode, microphone: Path
) -> tuple[BaresipClient, float]:
    """Start a baresip caller and dial the journey number.

    Returns the caller and the time from dial to CALL_ESTABLISHED, in seconds.
    """
    phone = BaresipClient(
        work_dir, user=user, microphone=microphone, max_call_s=120, capture_rtp=False
    )
    phone.start()
    started = time.monotonic()
    phone.dial(f"sip:{NUMBER}@127.0.0.1:{node.sip_port}")
    established = phone.wait_established(15)
    return phone, established - started


async def wait_joined(node: RunningNode, count: int) -> None:
    """Wait until `count` callers have joined the queue, so the dialing order is the join order."""

    def ready(counters: dict[str, int]) -> bool:
        return counters.get("joined", 0) >= count

    counters = await wait_counters(node, ready, 30)
    if not ready(counters):
        raise TimeoutError(f"timed out waiting for {count} callers in the queue: {counters}")


async def fetch_cdrs(base: str, count: int, timeout_s: float) -> list[dict[str, Any]]:
    """Poll `GET /api/cdrs` until `count` records exist, because CDRs are written at call end."""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    deadline = time.monotonic() + timeout_s
    records: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(f"{base}/api/cdrs?limit=50", headers=headers) as response:
                response.raise_for_status()
                records = (await response.json())["cdrs"]
            if len(records) >= count:
                return records
            await asyncio.sleep(0.2)
    raise TimeoutError(f"timed out: {len(records)} of {count} CDRs after {timeout_s} s")


async def serve_calls(
    agent: BrowserAgent, count: int, latencies: dict[str, Any]
) -> list[dict[str, str]]:
    """Answer `count` offers on the agent page and return the caller contexts in served order."""
    served: list[dict[str, str]] = []
    answer_to_connected: list[float] = []
    await agent.click("set-available")
    for _ in range(count):
        context = await agent.wait_incoming(60)
        served.append(context)
        clicked = time.monotonic()
        await agent.click("answer")
        await agent.wait_connected(20)
        answer_to_connected.append(round(time.monotonic() - clicked, 3))
        heard = await agent.heard_tone_s(CALLER_TONE_HZ, TALK_TONE_S, 30)
        if heard < TALK_TONE_S:
            raise RuntimeError(f"agent heard the caller's tone for {heard} s only")
        await agent.click("hangup")
        await agent.call_ended(15)
    # With callers still waiting the page rings again at once, so only the
    # last call is followed by a plain "available".
    await agent.wait_presence("available", 20)
    latencies["agent_answer_to_media_s"] = answer_to_connected
    return served


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def caller_entry(name: str, record: dict[str, Any], shown_intent: str | None) -> dict[str, Any]:
    """Pick one caller's summary fields from its CDR."""
    path = record["ivr_path"]
    return {
        "caller": name,
        "ivr_path": json.loads(path) if isinstance(path, str) else path,
        # The flow sets the intent as a variable, which the agent page shows.
        # The CDR's intent column holds only intents recognized from speech.
        "intent": record["intent"] or shown_intent or None,
        "queue": record["queue"],
        "priority": record["priority"],
        "priority_reason": record["priority_reason"],
        "wait_s": rounded(record["wait_s"]),
        "agent": record["agent_id"],
        "talk_s": rounded(record["talk_s"]),
        "disposition": record["disposition"],
    }


def check_priority(joined: dict[str, float], served: list[str], priority: int) -> dict[str, Any]:
    """Check that the priority caller went ahead of every earlier caller within the jump bound.

    `joined` maps each caller to the time it joined the queue, `served` lists
    the callers in the order the agent took them.
    """
    bound_s = min(priority * JUMP.credit_per_priority_s, JUMP.max_jump_s)
    vip_joined = joined[PRIORITY_CALLER]
    earlier = [name for name in CALLERS if joined[name] < vip_joined]
    vip_served = served.index(PRIORITY_CALLER)
    passed = [name for name in earlier if served.index(name) > vip_served]
    jumps_s = [round(vip_joined - joined[name], 2) for name in passed]
    ok = bool(earlier) and passed == earlier and all(jump <= bound_s for jump in jumps_s)
    return {
        "priority_caller": PRIORITY_CALLER,
        "earlier_callers": earlier,
        "served_before": passed,
        "jumped_s": jumps_s,
        "jump_bound_s": bound_s,
        "ok": ok,
    }


def summarize(
    cdrs: list[dict[str, Any]],
    events: EventLog,
    contexts: list[dict[str, str]],
    latencies: dict[str, Any],
) -> dict[str, Any]:
    """Build the summary from the CDRs, the event log and what the agent page showed."""
    served = [context["caller"] for context in contexts]
    shown_intent = {context["caller"]: context["intent"] for context in contexts}
    by_caller = {record["caller"]: record for record in cdrs if record["caller"] in CALLERS}
    missing = [name for name in CALLERS if name not in by_caller]
    if missing:
        raise RuntimeError(f"no CDR for callers {missing}: see cdrs.json in the output folder")

    callers = []
    joined: dict[str, float] = {}
    for name in CALLERS:
        record = by_caller[name]
        callers.append(caller_entry(name, record, shown_intent.get(name)))
        joined_at = events.first_time("acd.caller_joined", record["call_id"])
        if joined_at is None:
            raise RuntimeError(f"no acd.caller_joined event for caller {name}")
        joined[name] = joined_at

    priority = by_caller[PRIORITY_CALLER]["priority"]
    return {
        "callers": callers,
        "served_order": served,
        "agent_page_context": contexts,
        "priority_check": check_priority(joined, served, priority),
        "setup_latency_s": latencies,
    }


async def run_demo(work_dir: Path) -> dict[str, Any]:
    """Run the demo and return the summary. Call it only inside a loopback-only namespace."""
    install_host_addresses(["127.0.0.1"])
    latencies: dict[str, Any] = {}
    caller_microphone = write_wav(
        work_dir / "caller-tone.wav", tone(CALLER_TONE_HZ, 100.0, 8000, amplitude=0.2), 8000
    )
    agent_microphone = write_wav(
        work_dir / "agent-tone.wav", tone(AGENT_TONE_HZ, 180.0, 48_000, amplitude=0.3), 48_000
    )
    # The CDR file of an earlier run in the same folder would mix old calls in.
    (work_dir / "cdr.sqlite").unlink(missing_ok=True)
    started = time.monotonic()
    with voxgate_node(work_dir, demo_settings(work_dir)) as node:
        latencies["node_start_s"] = round(time.monotonic() - started, 3)
        base = f"http://127.0.0.1:{node.http_port}"
        phones: list[BaresipClient] = []
        try:
            async with (
                EventLog(base) as events,
                BrowserAgent(f"{base}/agent", agent_microphone, work_dir / "chromium.log") as agent,
            ):
                started = time.monotonic()
                await agent.login(AGENT, PASSWORD)
                latencies["agent_login_s"] = round(time.monotonic() - started, 3)
                dial_setup: dict[str, float] = {}
                for count, name in enumerate(CALLERS, start=1):
                    phone, setup_s = await asyncio.to_thread(
                        dial, work_dir, name, node, caller_microphone
                    )
                    phones.append(phone)
                    dial_setup[name] = round(setup_s, 3)
                    await wait_joined(node, count)
                latencies["sip_invite_to_established_s"] = dial_setup
                served = await serve_calls(agent, len(CALLERS), latencies)
                cdrs = await fetch_cdrs(base, len(CALLERS), 20)
                (work_dir / "cdrs.json").write_text(json.dumps(cdrs, indent=2))
                (work_dir / "events.json").write_text(json.dumps(events.events, indent=2))
                summary = summarize(cdrs, events, served, latencies)
        finally:
            for phone in phones:
                await asyncio.to_thread(phone.stop)
        summary["node_log_tracebacks"] = node.log().count("Traceback")
    return summary


def run_in_namespace(out: Path, timeout_s: float) -> dict[str, Any]:
    """Re-run this script inside `unshare -n` with only `lo` up and return its summary."""
    if os.geteuid() != 0:
        raise SystemExit("demo: `unshare -n` needs root. Run `sudo make demo` or run as root.")
    out.mkdir(parents=True, exist_ok=True)
    result = out / "summary.json"
    result.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--inside", "--out", str(out)]
    script = "ip link set lo up && exec " + shlex.join(command)
    completed = subprocess.run(
        ["unshare", "-n", "sh", "-c", script],
        cwd=REPOSITORY,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        timeout=timeout_s,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"demo failed with exit code {completed.returncode}; logs in {out}")
    summary: dict[str, Any] = json.loads(result.read_text())
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=REPOSITORY / "var" / "demo", help="folder for logs and summary"
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="limit for the whole run, in s"
    )
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if not args.inside:
        started = time.monotonic()
        summary = run_in_namespace(args.out, args.timeout)
        summary["runtime_s"] = round(time.monotonic() - started, 1)
        print(json.dumps(summary, indent=2))
        return 0 if summary["priority_check"]["ok"] else 1
    args.out.mkdir(parents=True, exist_ok=True)
    summary = asyncio.run(asyncio.wait_for(run_demo(args.out), args.timeout - 10))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
