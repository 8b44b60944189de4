"""The command-line entry and setup shared by scenario modules run in a network namespace.

A scenario module runs one named case as `python -m <module> CASE --out DIR`
(through `tests.support.namespace.run_in_namespace`), works in `DIR/CASE` and
writes its report to `DIR/CASE-result.json`. An exception becomes the
report's `error` entry, so the test shows it instead of a missing file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from tests.acd.redis_server import RedisServer, start_redis

ScenarioRun = Callable[[str, Path], Awaitable[dict[str, Any]]]


def run_scenario_main(
    description: str | None,
    cases: Sequence[str],
    run: ScenarioRun,
    *,
    logger: logging.Logger,
    label: str,
    timeout_s: float = 200.0,
) -> int:
    """Parse `CASE --out DIR`, run `run(case, DIR/CASE)` and write its report as JSON.

    `label` names the scenario in the log line of a failed case. The exit code
    is 0 even when the case failed, because the report carries the error.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("case", choices=cases)
    parser.add_argument("--out", type=Path, required=True, help="folder for the report and logs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    work_dir = args.out / args.case
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        report = asyncio.run(asyncio.wait_for(run(args.case, work_dir), timeout_s))
    except Exception as exc:
        logger.exception("%s %s failed", label, args.case)
        report = {"case": args.case, "error": f"{type(exc).__name__}: {exc}"}
    (args.out / f"{args.case}-result.json").write_text(json.dumps(report, indent=2, default=str))
    return 0


def start_fresh_redis(work_dir: Path) -> RedisServer:
    """Start redis-server in an emptied `work_dir/redis`.

    The folder is emptied first because redis-server would reload an earlier
    run's AOF from it.
    """
    redis_dir = work_dir / "redis"
    shutil.rmtree(redis_dir, ignore_errors=True)
    redis_dir.mkdir()
    return start_redis(redis_dir)
