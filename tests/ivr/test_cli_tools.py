"""The simulate, test and graph subcommands."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.scripts import Expectation, check_case
from ivr.simulator import simulate
from tests.ivr.helpers import flow_from_file, run_flow

SCRIPTS = Path(__file__).resolve().parents[1] / "data" / "ivr" / "scripts"
PAIRS = [
    ("demo", "demo.script.yaml"),
    ("contact_center", "contact_center.script.yaml"),
    ("contact_center_zh", "contact_center_zh.script.yaml"),
]


@pytest.mark.parametrize(("flow", "script"), PAIRS)
def test_script_passes(
    flows_dir: Path, flow: str, script: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["test", str(flows_dir / f"{flow}.yaml"), "--script", str(SCRIPTS / script)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 failed" in out


def test_script_failure_shows_diff(
    flows_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "wrong.yaml"
    script.write_text(
        "cases:\n  - name: expects the wrong reply\n    turns: ['#1']\n"
        "    expect:\n      path: [welcome, choose, support, goodbye]\n"
        "      variables: {choice: '2'}\n"
    )
    code = main(["test", str(flows_dir / "demo.yaml"), "--script", str(script)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"FAIL expects the wrong reply ({script}:2)" in out
    assert "expected ['welcome', 'choose', 'support', 'goodbye']" in out
    assert "actual   ['welcome', 'choose', 'sales', 'goodbye']" in out
    assert "variable choice:\n      expected '2'\n      actual   '1'" in out
    assert "0 passed, 1 failed" in out


def test_script_schema_error_is_positioned(
    flows_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "bad.yaml"
    script.write_text("cases:\n  - name: x\n    expect: {pathh: []}\n")
    assert main(["test", str(flows_dir / "demo.yaml"), "--script", str(script)]) == 1
    assert f"{script}:3:14: cases[0].expect.pathh: []: unknown key 'pathh'" in (
        capsys.readouterr().err
    )


def test_script_unknown_expect_queue_key_is_positioned(
    flows_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "bad.yaml"
    script.write_text(
        "cases:\n  - name: x\n    expect:\n      queue:\n        queue: billing\n"
        "        priorty: 1\n        skils: [en]\n"
    )
    assert main(["test", str(flows_dir / "demo.yaml"), "--script", str(script)]) == 1
    out = capsys.readouterr()
    errors = out.err.splitlines()
    assert (
        f"{script}:6:9: cases[0].expect.queue.priorty: 1: unknown key 'priorty' "
        "(hint: did you mean 'priority'?)"
    ) in errors
    assert (
        f"{script}:7:9: cases[0].expect.queue.skils: [\"en\"]: unknown key 'skils' "
        "(hint: did you mean 'skills'?)"
    ) in errors
    assert out.out == ""


def test_script_unknown_keys_get_suggestions(
    flows_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "bad.yaml"
    script.write_text(
        "crm:\n  /orders/1: {stauts: 503}\n"
        "cases:\n  - name: x\n    expect: {pathh: [], outcome: hangup}\n"
    )
    assert main(["test", str(flows_dir / "demo.yaml"), "--script", str(script)]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert (
        f"{script}:2:15: crm./orders/1.stauts: 503: unknown key 'stauts' "
        "(hint: did you mean 'status'?)"
    ) in errors
    assert (
        f"{script}:5:14: cases[0].expect.pathh: []: unknown key 'pathh' "
        "(hint: did you mean 'path'?)"
    ) in errors


def test_script_queue_mismatch_names_field(
    flows_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "queue.yaml"
    script.write_text(
        "cases:\n  - name: billing by key\n    now: 2026-12-07T15:00:00Z\n"
        "    turns: ['#1']\n    expect:\n"
        "      queue: {queue: billing, priority: 3, skills: [billing, en]}\n"
    )
    code = main(["test", str(flows_dir / "contact_center.yaml"), "--script", str(script)])
    out = capsys.readouterr().out
    assert code == 1
    assert "queue priority:\n      expected 3\n      actual   1" in out
    assert "queue queue" not in out
    assert "queue skills" not in out


def test_script_without_now_warns_on_time_branch(
    flows_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "clock.yaml"
    script.write_text(
        "cases:\n"
        "  - name: fixed clock\n    now: 2026-12-07T15:00:00Z\n    turns: ['#1']\n"
        "    expect: {outcome: queued}\n"
        "  - name: real clock\n    variables: {open_all_hours: true}\n    turns: ['#1']\n"
        "    expect: {outcome: queued}\n"
    )
    code = main(["test", str(flows_dir / "contact_center.yaml"), "--script", str(script)])
    out = capsys.readouterr()
    assert code == 0, out.out
    warnings = [line for line in out.err.splitlines() if line.endswith("[warning]")]
    assert warnings == [
        f"{script}:6:5: cases[1].name: 'real clock': case has no 'now' but the flow tests "
        "the time of day (contact_center/hours), so its result depends on when it runs "
        "(hint: set 'now:' to a fixed time, such as 2026-12-07T15:00:00Z) [warning]"
    ]


def test_script_without_now_warns_through_subflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "outer.yaml").write_text(
        "flow: outer\nsteps:\n  inner: {type: subflow, flow: inner}\n  bye: {type: hangup}\n"
    )
    (tmp_path / "inner.yaml").write_text(
        "flow: inner\nsteps:\n"
        "  hours:\n    type: branch\n"
        "    cases: [{if: {not: {time: {between: '08:00-20:00'}}}, goto: closed}]\n"
        "    otherwise: open\n"
        "  closed: {type: hangup}\n  open: {type: return}\n"
    )
    script = tmp_path / "outer.script.yaml"
    script.write_text("cases:\n  - name: any time\n    expect: {}\n")
    main(["test", str(tmp_path / "outer.yaml"), "--script", str(script)])
    err = capsys.readouterr().err
    assert f"{script}:2:5: cases[0].name: 'any time': case has no 'now'" in err
    assert "(inner/hours)" in err


def test_script_without_now_quiet_without_time_branch(
    flows_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = SCRIPTS / "demo.script.yaml"
    assert "now:" not in script.read_text()
    assert main(["test", str(flows_dir / "demo.yaml"), "--script", str(script)]) == 0
    assert "[warning]" not in capsys.readouterr().err


async def test_check_case_prompts_in_order(flows_dir: Path) -> None:
    run = await run_flow(flow_from_file(flows_dir / "demo.yaml"), ["#2"])
    assert check_case(Expectation(prompts=["Welcome", "support"]), run.result) == []
    assert check_case(Expectation(prompts=["support", "Welcome"]), run.result) != []


# A Tuesday noon and a Sunday noon in New York, inside and outside the flow's hours.
OPEN_TIME = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
CLOSED_TIME = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))


async def test_simulator_transcript(flows_dir: Path) -> None:
    lines = iter(["", "I'd like to talk about billing", "/hangup"])
    out = io.StringIO()
    result = await simulate(
        flow_from_file(flows_dir / "contact_center.yaml"),
        lambda: next(lines, None),
        out,
        flows=None,
        now=OPEN_TIME,
    )
    text = out.getvalue()
    assert "IVR: Thank you for calling Northwind." in text
    assert "[main] menu" in text
    assert "IVR: Sorry, I did not hear you." in text
    assert "result: match -> billing" in text
    assert result.queue_request is not None
    assert result.queue_request.queue == "billing"
    assert "queued: billing priority=" in text


async def test_simulator_closed_hours(flows_dir: Path) -> None:
    lines = iter(["/hangup"])
    out = io.StringIO()
    result = await simulate(
        flow_from_file(flows_dir / "contact_center.yaml"),
        lambda: next(lines, None),
        out,
        flows=None,
        now=CLOSED_TIME,
    )

    assert result.path[:3] == ["welcome", "hours", "closed"]
    assert "[main] menu" not in out.getvalue()


def test_simulate_rejects_time_without_offset(
    flows_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["simulate", str(flows_dir / "contact_center.yaml"), "--at", "2026-12-01T12:00"])

    assert caught.value.code == 2
    assert "has no UTC offset" in capsys.readouterr().err


def test_graph_mermaid(flows_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(flows_dir / "demo.yaml"), "--format", "mermaid"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("flowchart TD")
    assert 's_choose -->|"1"| s_sales' in text
    assert 's_choose -->|"no_input"| s_goodbye' in text


def test_graph_svg_is_wellformed(flows_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "flow.svg"
    assert main(["graph", str(flows_dir / "contact_center.yaml"), "-o", str(out)]) == 0
    root = ElementTree.fromstring(out.read_text())
    assert root.tag.endswith("svg")
    texts = {"".join(node.itertext()) for node in root.iter() if node.tag.endswith("text")}
    assert any("anything_else" in text for text in texts)
    assert any("senior_queue" in text for text in texts)


def test_graph_invalid_flow_exits_one(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("flow: bad\nsteps: {}\n")
    assert main(["graph", str(path)]) == 1


def test_simulate_closed_stdout_quiet(flows_dir: Path) -> None:
    """`voxgate simulate ... | head -1`: no BrokenPipeError traceback, SIGPIPE-like status."""
    repo = flows_dir.parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ivr.cli", "simulate", str(flows_dir / "demo.yaml")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=repo,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    # The banner is flushed with the first "you> " prompt, when the simulator waits for a turn.
    assert proc.stdout.readline().startswith(b"flow demo:")
    proc.stdout.close()
    proc.stdin.write(b"#1\n" * 20)
    proc.stdin.close()
    assert proc.wait(timeout=60) == 141
    errors = proc.stderr.read().decode()
    proc.stderr.close()
    assert "Traceback" not in errors
    assert "BrokenPipe" not in errors


@pytest.mark.parametrize(
    "arguments", [["graph"], ["test", "--script", str(SCRIPTS / "demo.script.yaml")]]
)
def test_commands_closed_stdout_quiet(flows_dir: Path, arguments: list[str]) -> None:
    """A stdout pipe whose reader is gone before the command writes gives status 141."""
    repo = flows_dir.parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    command, *options = arguments
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ivr.cli", command, str(flows_dir / "demo.yaml"), *options],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            cwd=repo,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr.decode()
    assert done.returncode == 141
