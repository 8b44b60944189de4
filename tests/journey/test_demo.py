"""The `make demo` run as a test: scripts/demo.py with a bounded timeout, checked on its summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240

pytestmark = [pytest.mark.peer, pytest.mark.slow, pytest.mark.timeout(TIMEOUT_S + 60)]

ENGLISH = "contact_center_demo"
KOREAN = "contact_center_ko"
# Per caller: flow, menu input, intent, queue, priority, priority reason.
EXPECTED = {
    "keys-billing": (ENGLISH, ("dtmf", "1"), "billing", "billing", 1, "queue"),
    "speech-billing": (KOREAN, ("speech", "요금"), "billing", "billing", 1, "queue"),
    "browser-agent": (KOREAN, ("speech", "상담원"), "agent", "general", 0, "queue"),
    "keys-payment": (ENGLISH, ("dtmf", "5"), "payment", "payments", 5, "payment"),
    "vip-billing": (ENGLISH, ("dtmf", "1"), "billing", "billing", 7, "vip"),
}
SIP_CALLERS = ["keys-billing", "keys-payment", "speech-billing", "vip-billing"]
NORMAL_NAMES = ["keys-billing", "speech-billing", "browser-agent"]


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    for tool in ("baresip", "chromium", "unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if os.geteuid() != 0:
        pytest.skip("unshare -n needs root")
    out = tmp_path_factory.mktemp("demo")
    command = [
        sys.executable,
        str(ROOT / "scripts" / "demo.py"),
        "--out",
        str(out),
        "--timeout",
        str(TIMEOUT_S),
    ]
    completed = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=TIMEOUT_S + 30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")[-3000:]
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def test_demo_callers_routed_by_flow(summary: dict[str, Any]) -> None:
    callers = {entry["caller"]: entry for entry in summary["callers"]}
    assert sorted(callers) == sorted(EXPECTED)
    for name, (flow, menu_input, intent, queue, priority, reason) in EXPECTED.items():
        entry = callers[name]
        assert entry["flow"] == flow, name
        assert entry["menu_input"] == {"mode": menu_input[0], "value": menu_input[1]}, name
        assert entry["intent"] == intent, name
        assert entry["queue"] == queue, name
        assert entry["priority"] == priority, name
        assert entry["priority_reason"] == reason, name


def test_demo_flow_open_at_any_hour(summary: dict[str, Any]) -> None:
    callers = {entry["caller"]: entry for entry in summary["callers"]}
    for name in ("keys-billing", "keys-payment", "vip-billing"):
        path = callers[name]["ivr_path"]
        assert "contact_center/hours" in path, name
        assert "contact_center/main" in path, name
        assert "contact_center/closed" not in path, name
    assert "contact_center/vip_greeting" in callers["vip-billing"]["ivr_path"]
    assert "contact_center/vip_greeting" not in callers["keys-billing"]["ivr_path"]


def test_demo_speech_words_and_sentiment(summary: dict[str, Any]) -> None:
    callers = {entry["caller"]: entry for entry in summary["callers"]}
    assert callers["speech-billing"]["words"] == "요금"
    assert callers["browser-agent"]["words"] == "상담원"
    for name in ("speech-billing", "browser-agent"):
        assert len(callers[name]["sentiment"]) == 1, name
    assert callers["keys-billing"]["words"] is None
    assert callers["keys-billing"]["sentiment"] == []


def test_demo_callers_waited_and_talked(summary: dict[str, Any]) -> None:
    for entry in summary["callers"]:
        name = entry["caller"]
        assert entry["agent"] == "agent1", name
        assert entry["disposition"] == "completed", name
        assert entry["wait_s"] > 0, name
        assert entry["talk_s"] >= 1.0, name
        assert entry["announcements"], name
        assert all(a["position"] >= 1 for a in entry["announcements"]), name
        assert entry["hold_music_heard_s"] > 0, name


def test_demo_expected_wait_announced(summary: dict[str, Any]) -> None:
    callers = {entry["caller"]: entry for entry in summary["callers"]}
    last = callers[summary["served_order"][-1]]
    expected_waits = [a["eta_s"] for a in last["announcements"] if a["eta_s"] is not None]
    assert expected_waits, last["announcements"]
    # While callers were ahead, the wait was above zero. An announcement made as
    # the agent turns free gives 0, because a free agent takes the call at once.
    assert any(wait > 0 for wait in expected_waits), expected_waits
    assert all(wait >= 0 for wait in expected_waits), expected_waits


def test_demo_priority_callers_served_first(summary: dict[str, Any]) -> None:
    assert summary["served_order"][:2] == ["vip-billing", "keys-payment"]
    check = summary["priority_check"]
    assert check["served_order"] == check["promised_order"]
    passed = {(jump["caller"], jump["served_before"]) for jump in check["jumps"]}
    for earlier in NORMAL_NAMES:
        assert ("vip-billing", earlier) in passed
        assert ("keys-payment", earlier) in passed
    assert all(jump["within_bound"] for jump in check["jumps"])
    for name in ("vip-billing", "keys-payment"):
        headline = check["priority_callers"][name]
        assert set(headline["served_before_earlier"]) >= set(NORMAL_NAMES), name
        assert headline["within_bound"] is True, name
    assert check["ok"] is True


def test_demo_agent_page_context(summary: dict[str, Any]) -> None:
    contexts = summary["agent_page_context"]
    callers = {entry["caller"]: entry for entry in summary["callers"]}
    assert len(contexts) == len(EXPECTED)
    for name, context in zip(summary["served_order"], contexts, strict=True):
        entry = callers[name]
        assert context["caller"] == entry["number"], name
        assert context["queue"] == entry["queue"], name
        assert context["intent"] == entry["intent"], name
        assert context["priority"] == str(entry["priority"]), name
        # A caller at priority 0 never jumps, so the page shows no reason.
        shown_reason = entry["priority_reason"] if entry["priority"] > 0 else ""
        assert context["priority_reason"] == shown_reason, name
        assert context["path"].split(" → ") == entry["ivr_path"], name
        assert context["waiting"].endswith(" s"), name
        shown = context["sentiment"].split(" → ") if context["sentiment"] else []
        assert len(shown) == len(entry["sentiment"]), name


def test_demo_latencies_measured(summary: dict[str, Any]) -> None:
    latencies = summary["latency_s"]
    assert sorted(latencies["sip_invite_to_established_s"]) == sorted(SIP_CALLERS)
    assert list(latencies["browser_call_to_connected_s"]) == ["browser-agent"]
    assert len(latencies["agent_answer_to_media_s"]) == len(EXPECTED)
    speech = latencies["end_of_speech"]["speech-billing"]
    assert speech["end_of_speech_to_input_s"] > 0
    assert speech["end_of_speech_to_reply_s"] > speech["end_of_speech_to_input_s"]


def test_demo_node_log_clean(summary: dict[str, Any]) -> None:
    assert summary["node_log_tracebacks"] == 0
