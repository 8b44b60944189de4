from __future__ import annotations

from pathlib import Path

import pytest

from ivr.cli import main
from voxgate.cli import main as voxgate_main


def test_validate_demo_exits_zero(flows_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(flows_dir / "demo.yaml")]) == 0
    assert "demo.yaml: ok" in capsys.readouterr().out


def test_validate_broken_exits_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("flow: bad\nsteps:\n  a: {type: say, text: hi, next: b}\n")
    assert main(["validate", str(path)]) == 1
    assert f"{path}:3:28: steps.a.next: 'b': unknown step" in capsys.readouterr().err


def test_validate_dir_skips_script_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hot.yaml").write_text("flow: hot\nsteps:\n  a: {type: hangup}\n")
    (tmp_path / "hot.script.yaml").write_text("cases:\n  - name: x\n    turns: []\n")
    assert main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "hot.yaml: ok" in out.out
    assert "hot.script.yaml" not in out.out + out.err


def test_validate_dir_reports_conflicts_naming_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, third = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    first.write_text(
        'flow: a\ndefault: true\nnumbers: ["2000", "2001"]\nsteps:\n  x: {type: hangup}\n'
    )
    second.write_text(
        'flow: b\ndefault: true\nnumbers:\n  - "3000"\n  - "2001"\nsteps:\n  x: {type: hangup}\n'
    )
    third.write_text('flow: a\nnumbers: ["4000"]\nsteps:\n  x: {type: hangup}\n')
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert f"{first}: ok" in out.out
    assert f"{second}: ok" not in out.out
    assert f"{third}: ok" not in out.out
    errors = out.err.splitlines()
    assert (
        f"{second}:5:5: numbers[1]: '2001': called number is also listed by {first} "
        "(hint: the registry routes it to a.yaml)"
    ) in errors
    assert f"{second}:2:1: default: True: {first} is also the default flow " in out.err
    assert (
        f"{third}:1:1: flow: 'a': flow name is also used by {first} "
        "(hint: the registry keeps a.yaml and ignores this file)"
    ) in errors


def test_validate_files_one_by_one_skips_folder_conflicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("flow: a\nsteps:\n  x: {type: hangup}\n")
    assert main(["validate", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]) == 0
    assert capsys.readouterr().err == ""


def test_validate_config_rejects_unknown_queue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tmp_path / "q.yaml"
    flow.write_text(
        "flow: q\nsteps:\n"
        "  pick: {type: branch, cases: [{if: {var: language, eq: en}, goto: sales}]"
        ", otherwise: other}\n"
        "  sales: {type: queue, queue: slaes}\n"
        '  other: {type: queue, queue: "{{ language }}"}\n'
    )
    config = tmp_path / "voxgate.yaml"
    config.write_text("acd:\n  queues:\n    sales: {}\n    billing: {}\n")
    assert voxgate_main(["validate", "--config", str(config), str(flow)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert (
        f"{flow}:4:24: steps.sales.queue: 'slaes': unknown queue: not in acd.queues "
        "(hint: did you mean 'sales'?)"
    ) in err
    assert len(err) == 1, err


def test_validate_config_lists_queues_when_none_close(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tmp_path / "q.yaml"
    flow.write_text("flow: q\nsteps:\n  a: {type: queue, queue: zzz}\n")
    config = tmp_path / "voxgate.yaml"
    config.write_text("acd:\n  queues:\n    sales: {}\n    billing: {}\n")
    assert voxgate_main(["validate", "--config", str(config), str(flow)]) == 1
    assert "(hint: acd.queues defines billing, sales)" in capsys.readouterr().err


def test_validate_config_accepts_known_queues(
    flows_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = flows_dir.parent / "voxgate.yaml"
    assert voxgate_main(["validate", "--config", str(config), str(flows_dir)]) == 0
    out = capsys.readouterr().out
    assert "contact_center.yaml: ok" in out


def test_validate_without_config_skips_queue_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tmp_path / "q.yaml"
    flow.write_text("flow: q\nsteps:\n  a: {type: queue, queue: zzz}\n")
    assert voxgate_main(["validate", str(flow)]) == 0
    assert f"{flow}: ok" in capsys.readouterr().out


def test_validate_invalid_config_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tmp_path / "q.yaml"
    flow.write_text("flow: q\nsteps:\n  a: {type: hangup}\n")
    config = tmp_path / "voxgate.yaml"
    config.write_text("acd:\n  queus: {}\n")
    assert voxgate_main(["validate", "--config", str(config), str(flow)]) == 2
    out = capsys.readouterr()
    assert f"{config}:2:3: acd.queus" in out.err
    assert "ok" not in out.out


def test_validate_missing_config_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tmp_path / "q.yaml"
    flow.write_text("flow: q\nsteps:\n  a: {type: hangup}\n")
    missing = tmp_path / "absent.yaml"
    assert voxgate_main(["validate", "--config", str(missing), str(flow)]) == 2
    assert f"{missing}: cannot read file" in capsys.readouterr().err
