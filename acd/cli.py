"""Command-line entry points of the ACD (`voxgate acd-sim`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

from acd.scenario import ScenarioError, load_scenario
from acd.sim import SimResult, Simulator
from acd.store.base import AcdStore
from acd.store.memory import MemoryStore


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ACD subcommands to a parent command's subparsers."""
    sim = subparsers.add_parser(
        "acd-sim",
        help="replay a routing scenario on a virtual clock",
        description="Replay a routing scenario (YAML) on a virtual clock against the ACD and "
        "print the positions at every announce_positions event and every offer.",
    )
    sim.add_argument("scenario", type=Path, help="scenario file (setup and events)")
    sim.add_argument(
        "--store",
        default="memory",
        help="'memory' (default) or a Redis URL such as redis://127.0.0.1:6379/0; the "
        "simulator writes under a fresh key prefix and deletes it afterwards",
    )
    sim.add_argument("--json", action="store_true", help="print the result as JSON")
    sim.set_defaults(func=run_sim_command)


async def simulate(scenario_path: Path, store_spec: str = "memory") -> SimResult:
    """Run a scenario file against a store given as `memory` or a Redis URL."""
    scenario = load_scenario(scenario_path)
    store: AcdStore
    if store_spec == "memory":
        store = MemoryStore()
    elif store_spec.startswith(("redis://", "rediss://", "unix://")):
        from acd.store.redis import RedisStore

        store = await RedisStore.connect(store_spec, prefix=f"acd-sim-{uuid.uuid4().hex[:8]}:")
    else:
        raise ScenarioError(f"invalid --store {store_spec!r}: use 'memory' or a redis:// URL")
    try:
        return await Simulator(scenario, store).run()
    finally:
        if hasattr(store, "delete_all"):
            await store.delete_all()
        await store.close()


def _print_text(result: SimResult) -> None:
    for announcement in result.announcements:
        print(f"t={announcement['t']:g} positions")
        for queue, callers in announcement["queues"].items():
            print(f"  queue {queue}: {', '.join(callers) or '(empty)'}")
    for offer in result.offers:
        print(
            f"t={offer['t']:g} offer {offer['caller']} -> agent {offer['agent']} "
            f"(queue {offer['queue']}, {offer['kind']})"
        )
    for left in result.left:
        print(f"t={left['t']:g} left {left['caller']} (queue {left['queue']}, {left['reason']})")


def run_sim_command(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(simulate(args.scenario, args.store))
    except (ScenarioError, KeyError, ValueError) as exc:
        print(f"acd-sim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"acd-sim: store failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        _print_text(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acd.cli")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_commands(subparsers)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
