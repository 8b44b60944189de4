"""`voxgate serve` raises the soft limit of open files to the hard limit."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
SHOW_LIMITS = (
    "import resource; from voxgate.cli import raise_open_file_limit; "
    "raise_open_file_limit(); print(*resource.getrlimit(resource.RLIMIT_NOFILE))"
)


def run_with_soft_limit(soft: int) -> tuple[int, int]:
    """Run `raise_open_file_limit` in a child whose soft limit starts at `soft`."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    result = subprocess.run(
        [sys.executable, "-c", SHOW_LIMITS],
        preexec_fn=lower,
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    child_soft, child_hard = result.stdout.split()
    return int(child_soft), int(child_hard)


def test_low_soft_limit_raised_to_hard() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip("this test needs a finite hard limit above 256")

    soft, child_hard = run_with_soft_limit(256)

    assert soft == hard
    assert child_hard == hard
