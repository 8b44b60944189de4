"""The simulate, test and graph subcommands."""

from __future__ import annotations

import io
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
    assert "FAIL expects the wrong reply" in out
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


async def test_check_case_prompts_in_order(flows_dir: Path) -> None:
    run = await run_flow(flow_from_file(flows_dir / "demo.yaml"), ["#2"])
    assert check_case(Expectation(prompts=["Welcome", "support"]), run.result) == []
    assert check_case(Expectation(prompts=["support", "Welcome"]), run.result) != []


async def test_simulator_transcript(flows_dir: Path) -> None:
    lines = iter(["", "I'd like to talk about billing", "/hangup"])
    out = io.StringIO()
    result = await simulate(
        flow_from_file(flows_dir / "contact_center.yaml"),
        lambda: next(lines, None),
        out,
        flows=None,
    )
    text = out.getvalue()
    assert "IVR: Thank you for calling Northwind." in text
    assert "[main] menu" in text
    assert "IVR: Sorry, I did not hear you." in text
    assert "result: match -> billing" in text
    assert result.queue_request is not None
    assert result.queue_request.queue == "billing"
    assert "queued: billing priority=" in text


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
