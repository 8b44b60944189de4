"""The harness of `bench/sip_path.py` completes its calls, so that the benchmark cannot rot."""

from __future__ import annotations

import argparse

from bench.sip_path import measure


async def test_sip_path_runs_every_call() -> None:
    args = argparse.Namespace(
        calls=6, warm_up=2, concurrency=2, profile_calls=3, top=5, log_level="INFO"
    )

    result = await measure(args, freeze=False)

    assert result["ended"] == result["expected"] == 11
    assert result["unexpected"] == 0
    assert result["cpu_us_per_call"] > 0
    assert result["python_calls_per_call"] > 100
    assert len(result["top"]) == 5
