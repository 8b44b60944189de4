from __future__ import annotations

from pathlib import Path

import pytest

from ivr.cli import main


def test_validate_demo_exits_zero(flows_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(flows_dir / "demo.yaml")]) == 0
    assert "demo.yaml: ok" in capsys.readouterr().out


def test_validate_broken_exits_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("flow: bad\nsteps:\n  a: {type: say, text: hi, next: b}\n")
    assert main(["validate", str(path)]) == 1
    assert f"{path}:3:28: steps.a.next: 'b': unknown step" in capsys.readouterr().err
