from __future__ import annotations

from pathlib import Path

from ivr.engine import Outcome
from ivr.events import EventKind
from tests.ivr.helpers import flow_from_file, run_flow


async def test_demo_digit_one_plays_sales(flows_dir: Path) -> None:
    run = await run_flow(flow_from_file(flows_dir / "demo.yaml"), ["#1"])
    assert run.result.path == ["welcome", "choose", "sales", "goodbye"]
    assert run.result.outcome is Outcome.HANGUP
    assert run.result.variables["choice"] == "1"


async def test_demo_prompts_differ_by_digit(flows_dir: Path) -> None:
    flow = flow_from_file(flows_dir / "demo.yaml")
    replies = {}
    for digit in ("1", "2", "5"):
        run = await run_flow(flow, [f"#{digit}"])
        replies[digit] = run.result.prompts[2]
    assert len(set(replies.values())) == 3
    lengths = sorted(len(text) for text in replies.values())
    assert lengths[0] * 1.5 < lengths[1]
    assert lengths[1] * 1.5 < lengths[2]
    assert "5" in replies["5"]


async def test_demo_silence_reprompts_then_hangs_up(flows_dir: Path) -> None:
    run = await run_flow(flow_from_file(flows_dir / "demo.yaml"), [None, None])
    assert run.result.path == ["welcome", "choose", "goodbye"]
    assert run.result.prompts[2].startswith("Sorry, I did not hear a key")
    assert run.channel is not None
    assert run.channel.hung_up_by_us


async def test_demo_emits_cdr_events(flows_dir: Path) -> None:
    run = await run_flow(flow_from_file(flows_dir / "demo.yaml"), ["#2"])
    entered = [e.step for e in run.of_kind(EventKind.STEP_ENTERED)]
    assert entered == ["welcome", "choose", "support", "goodbye"]
    inputs = run.of_kind(EventKind.INPUT_RECEIVED)
    assert [e.payload["value"] for e in inputs] == ["2"]
    assert len(run.of_kind(EventKind.PROMPT_PLAYED)) == 4
    assert run.events[-1].kind is EventKind.SESSION_ENDED


async def test_demo_caller_hangup_mid_gather(flows_dir: Path) -> None:
    run = await run_flow(flow_from_file(flows_dir / "demo.yaml"), ["(hangup)"])
    assert run.result.outcome is Outcome.CALLER_HANGUP
    assert run.result.path == ["welcome", "choose"]
