"""The flows that `make demo` dials, run as scripted calls on the text simulator."""

from __future__ import annotations

import pytest

from ivr.cli import main
from tests.support.node import REPOSITORY

FLOWS = REPOSITORY / "config" / "flows"
SCRIPTS = REPOSITORY / "tests" / "data" / "journey" / "scripts"


@pytest.mark.parametrize("flow", ["contact_center_demo", "contact_center_ko"])
def test_demo_flow_script_passes(flow: str, capsys: pytest.CaptureFixture[str]) -> None:
    script = SCRIPTS / f"{flow}.script.yaml"
    code = main(["test", str(FLOWS / f"{flow}.yaml"), "--script", str(script)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 failed" in out
