"""The queue field cases replayed through the routing simulator on both stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from acd.cli import simulate
from tests.acd.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
CASE_34 = DATA / "34-queue-priority-caller-joins-first-stalls-offers.yaml"
CASE_35 = DATA / "35-queue-cross-queue-priority-starvation.yaml"
CASE_37 = DATA / "37-queue-abandoned-caller-and-position-regression.yaml"


def _expected(path: Path) -> dict[str, Any]:
    expected: dict[str, Any] = yaml.safe_load(path.read_text())["expected"]
    return expected


def _announcement_at(result: dict[str, Any], t: float) -> dict[str, Any]:
    found: list[dict[str, Any]] = [a for a in result["announcements"] if a["t"] == t]
    assert len(found) == 1, f"expected one announcement at t={t}, got {result['announcements']}"
    return found[0]


def _with_changes(path: Path, tmp_path: Path, setup: dict[str, Any], events: list[Any]) -> Path:
    data = yaml.safe_load(path.read_text())
    data["setup"].update(setup)
    data["events"] = list(data["events"]) + events
    changed = tmp_path / path.name
    changed.write_text(yaml.safe_dump(data))
    return changed


def _serve_cycles(agents: list[str], first_t: int, cycles: int) -> list[dict[str, Any]]:
    """Events in which every agent answers its offer and hangs up, once per second."""
    events: list[dict[str, Any]] = []
    for cycle in range(cycles):
        t = first_t + cycle
        for agent in agents:
            events.append({"t": t, "op": "agent_answer", "agent": agent})
        for agent in agents:
            events.append({"t": t, "op": "agent_hangup", "agent": agent})
    return events


async def test_case34_positions_at_t10(store_spec: str) -> None:
    result = (await simulate(CASE_34, store_spec)).as_dict()

    announcement = _announcement_at(result, 10)

    assert announcement["queues"] == _expected(CASE_34)["positions_at_t10"]
    assert announcement["positions"]["A"]["position"] == 2
    assert announcement["positions"]["C"]["position"] == 1


async def test_case34_head_caller_offered_at_once(store_spec: str) -> None:
    result = (await simulate(CASE_34, store_spec)).as_dict()

    offers_at_12 = [offer for offer in result["offers"] if offer["t"] == 12]

    assert len(offers_at_12) == 1
    assert offers_at_12[0]["agent"] == "1600"
    assert offers_at_12[0]["caller"] in {"C", "B"}
    assert all(offer["t"] >= 12 for offer in result["offers"])


async def test_case34_priority_rule_never_stalls(store_spec: str, tmp_path: Path) -> None:
    scenario = _with_changes(CASE_34, tmp_path, {"cross_queue_rule": "priority_first"}, [])

    result = (await simulate(scenario, store_spec)).as_dict()

    assert [(o["t"], o["caller"]) for o in result["offers"]] == [(12, "C")]


async def test_case35_first_offers_priority_then_longest(store_spec: str) -> None:
    result = (await simulate(CASE_35, store_spec)).as_dict()

    first_two = {offer["caller"] for offer in result["offers"][:2]}

    assert first_two == {"V", "A1"}
    assert all(offer["t"] == 0 for offer in result["offers"][:2])


async def test_case35_long_waiters_not_passed(store_spec: str, tmp_path: Path) -> None:
    scenario = _with_changes(CASE_35, tmp_path, {}, _serve_cycles(["op1", "op2"], 1, 6))

    result = (await simulate(scenario, store_spec)).as_dict()
    served = [offer["caller"] for offer in result["offers"]]

    assert served[:2] in (["V", "A1"], ["A1", "V"])
    assert served[2:7] == ["A2", "A3", "A4", "A5", "A6"]
    assert served[7:9] == ["B1", "B2"]
    assert len(served) == len(set(served))


async def test_case35_head_wait_rule_reproduces_order(store_spec: str, tmp_path: Path) -> None:
    scenario = _with_changes(
        CASE_35,
        tmp_path,
        {"cross_queue_rule": "longest_waiting_head_caller"},
        _serve_cycles(["op1", "op2"], 1, 3),
    )

    result = (await simulate(scenario, store_spec)).as_dict()
    served = [offer["caller"] for offer in result["offers"]]

    assert served[:6] == ["B1", "B2", "B3", "B4", "B5", "B6"]
    assert "V" not in served[:6]


async def test_case37_announcements(store_spec: str) -> None:
    result = (await simulate(CASE_37, store_spec)).as_dict()
    expected = _expected(CASE_37)

    at_20 = _announcement_at(result, 20)["positions"]
    at_40 = _announcement_at(result, 40)["positions"]

    assert {caller: p["position"] for caller, p in at_20.items()} == expected[
        "announcements_at_t20"
    ]
    assert {caller: p["position"] for caller, p in at_40.items()} == expected[
        "announcements_at_t40"
    ]
    assert at_40["B"]["position"] <= at_20["B"]["position"]
    assert at_40["X"]["jumped_ahead"] == 0


async def test_case37_abandoned_caller_leaves_at_once(store_spec: str) -> None:
    result = (await simulate(CASE_37, store_spec)).as_dict()

    assert result["left"] == [
        {"t": 30.0, "caller": "A", "queue": "sales", "reason": "hangup", "overflow_target": None}
    ]


async def test_case37_rejoin_goes_to_tail(store_spec: str, tmp_path: Path) -> None:
    scenario = _with_changes(CASE_37, tmp_path, {}, [{"t": 201, "op": "announce_positions"}])

    result = (await simulate(scenario, store_spec)).as_dict()

    assert _announcement_at(result, 201)["queues"] == {"sales": ["B", "X", "A"]}


def test_cli_prints_json(store_spec: str) -> None:
    command = [sys.executable, "-m", "acd.cli", "acd-sim", str(CASE_34), "--json"]
    command += ["--store", store_spec]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert _announcement_at(result, 10)["queues"] == _expected(CASE_34)["positions_at_t10"]
    assert [offer["agent"] for offer in result["offers"]] == ["1600"]


def test_cli_rejects_bad_scenario(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("setup: {queues: {q: {}}}\nevents: [{t: 0, op: explode}]\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    done = subprocess.run(
        [sys.executable, "-m", "acd.cli", "acd-sim", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert done.returncode == 2
    assert "unknown op 'explode'" in done.stderr


async def test_case37_rejoin_within_window_resumes(store_spec: str, tmp_path: Path) -> None:
    data = yaml.safe_load(CASE_37.read_text())
    data["events"] = [e for e in data["events"] if e["op"] != "rejoin"] + [
        {"t": 60, "op": "rejoin", "caller": "A"},
        {"t": 61, "op": "announce_positions"},
    ]
    scenario = tmp_path / "resume.yaml"
    scenario.write_text(yaml.safe_dump(data))

    result = (await simulate(scenario, store_spec)).as_dict()
    at_61 = _announcement_at(result, 61)

    assert at_61["queues"] == {"sales": ["A", "B", "X"]}
    assert at_61["positions"]["B"]["position"] == 2
    assert at_61["positions"]["B"]["jumped_ahead"] == 1
