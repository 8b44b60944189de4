"""Running a test scenario in a private network namespace that has only loopback.

Scenarios with Chromium, aiortc or several nodes run as a child process
started with `unshare -n`, so nothing they send can leave the machine,
whatever addresses ICE gathers. The child writes its report as JSON to a
file, which the test reads back.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def require_namespace(*tools: str) -> None:
    """Skip the test where `tools`, unshare, ip or root rights are missing."""
    for tool in (*tools, "unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if os.geteuid() != 0:
        pytest.skip("unshare -n needs root")


def run_in_namespace(
    module: str,
    args: Sequence[str],
    result_file: Path,
    *,
    timeout_s: float,
    tools: Sequence[str] = (),
) -> dict[str, Any]:
    """Run `python -m module args...` with only loopback and return the report it wrote.

    Fails the test when the child exits non-zero or its report contains an `error` key.
    """
    require_namespace(*tools)
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", module, *args]
    script = "ip link set lo up && exec " + shlex.join(command)
    completed = subprocess.run(
        ["unshare", "-n", "sh", "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")[-3000:]
    report: dict[str, Any] = json.loads(result_file.read_text("utf-8"))
    assert "error" not in report, report["error"]
    return report
