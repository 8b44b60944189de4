"""The `voxgate` subcommands of the IVR: validate, simulate, test and graph."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ivr.graph import to_dot, to_mermaid, to_svg
from ivr.loader import Diagnostic, FlowError, load_flow, load_flow_with_source
from ivr.model import Flow
from ivr.registry import FlowRegistry, is_flow_file
from ivr.scripts import clock_warnings, format_reports, load_script_with_source, run_script
from ivr.simulator import simulate
from ivr.validator import check_flow

# Reads the queue names (`acd.queues`) of a server settings file; raises ValueError
# with a message naming file, line and key when the file is invalid.
QueueNamesReader = Callable[[Path], set[str]]


def add_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    read_queue_names: QueueNamesReader | None = None,
) -> None:
    """Register the IVR subcommands; each sets `func` returning an exit code.

    With `read_queue_names`, `validate` takes `--config FILE` and checks queue
    steps against the queues that settings file defines.
    """
    validate = subparsers.add_parser("validate", help="check flow files (schema and static checks)")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="flow files or folders")
    validate.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1)")
    if read_queue_names is not None:
        validate.add_argument(
            "--config",
            type=Path,
            metavar="FILE",
            help="server settings file (as for serve); queue steps must name one of its acd.queues",
        )
    validate.set_defaults(func=run_validate, read_queue_names=read_queue_names, config=None)

    simulate = subparsers.add_parser(
        "simulate", help="talk to a flow in the terminal: words are speech, #digits are DTMF"
    )
    simulate.add_argument("flow", metavar="FLOW", help="flow file")
    simulate.add_argument("--caller", default="+15550100001", help="caller number to present")
    simulate.add_argument("--called", default="1000", help="called number to present")
    simulate.add_argument(
        "--at",
        type=_aware_time,
        default=None,
        help="wall clock for time-of-day branches, ISO 8601 with offset (2026-12-01T12:00-05:00)",
    )
    simulate.set_defaults(func=run_simulate)

    test = subparsers.add_parser("test", help="run scripted calls against a flow")
    test.add_argument("flow", metavar="FLOW", help="flow file")
    test.add_argument("--script", required=True, metavar="SCRIPT", help="script YAML file")
    test.set_defaults(func=run_test)

    graph = subparsers.add_parser("graph", help="draw a flow's steps and transitions")
    graph.add_argument("flow", metavar="FLOW", help="flow file")
    graph.add_argument("-o", "--output", metavar="FILE", help="output file; stdout if omitted")
    graph.add_argument(
        "--format",
        choices=("svg", "mermaid", "dot"),
        help="output format; by default from the output suffix, else mermaid",
    )
    graph.set_defaults(func=run_graph)


def _flow_files(paths: list[str]) -> list[tuple[Path, Path | None]]:
    """List the flow files to check, each with its folder argument (None for a file argument)."""
    files: list[tuple[Path, Path | None]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            # A folder's test scripts (*.script.yaml) are not flows; see is_flow_file.
            files.extend((p, path) for p in sorted(path.iterdir()) if is_flow_file(p))
        else:
            files.append((path, None))
    return files


def folder_conflicts(files: list[Path]) -> dict[Path, list[Diagnostic]]:
    """Find conflicts between the valid flows of one folder, keyed by the file that loses.

    The registry loads a folder's files in name order. It keeps the first flow with
    a given name, the first flow listing a called number and the first
    `default: true`, so each later claim is reported as an error on the later file.
    A file whose flow name is taken is ignored whole, so its numbers and default
    claim nothing.
    """
    found: dict[Path, list[Diagnostic]] = {}
    names: dict[str, Path] = {}
    numbers: dict[str, Path] = {}
    default: Path | None = None
    for path in sorted(files):
        try:
            flow, source = load_flow_with_source(path)
        except FlowError:
            continue
        problems: list[Diagnostic] = []
        if flow.flow in names:
            problems.append(
                source.diagnostic(
                    ("flow",),
                    f"flow name is also used by {names[flow.flow]}",
                    hint=f"the registry keeps {names[flow.flow].name} and ignores this file",
                )
            )
            found[path] = problems
            continue
        names[flow.flow] = path
        for index, number in enumerate(flow.numbers):
            if number in numbers:
                problems.append(
                    source.diagnostic(
                        ("numbers", index),
                        f"called number is also listed by {numbers[number]}",
                        hint=f"the registry routes it to {numbers[number].name}",
                    )
                )
            else:
                numbers[number] = path
        if flow.default:
            if default is not None:
                problems.append(
                    source.diagnostic(
                        ("default",),
                        f"{default} is also the default flow",
                        hint=f"the registry uses {default.name}; keep one 'default: true'",
                    )
                )
            else:
                default = path
        if problems:
            found[path] = problems
    return found


def flow_names_in(folder: Path) -> set[str]:
    """Return the names of the valid flows in `folder`, which subflow steps may call."""
    names = set()
    for path in folder.iterdir():
        if not is_flow_file(path):
            continue
        try:
            flow, _ = load_flow_with_source(path)
        except FlowError:
            continue
        names.add(flow.flow)
    return names


def validate_file(path: Path, known_queues: set[str] | None = None) -> list[Diagnostic]:
    """Return every schema error, or every static-check finding, of one flow file.

    Subflow steps must name a flow defined in the same folder. With
    `known_queues`, queue steps must name one of those queues.
    """
    try:
        flow, source = load_flow_with_source(path)
    except FlowError as exc:
        return exc.diagnostics
    known = flow_names_in(path.parent) if _has_subflow(flow) else None
    return check_flow(flow, source, path.parent, known, known_queues)


def _has_subflow(flow: Flow) -> bool:
    return any(step.type == "subflow" for step in flow.steps.values())


# Exit status when stdout is closed early, as a shell reports a tool killed by SIGPIPE.
EXIT_STDOUT_CLOSED = 141


def _quiet_when_stdout_closed(
    command: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """Wrap a subcommand so a closed stdout (`| head`) ends it quietly with status 141."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except BrokenPipeError:
            # Point stdout at /dev/null, or Python reports a failed flush of stdout at exit.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass
            return EXIT_STDOUT_CLOSED

    return run


# Exit status of `validate` when its --config settings file is invalid, as for `serve`.
EXIT_USAGE = 2


@_quiet_when_stdout_closed
def run_validate(args: argparse.Namespace) -> int:
    known_queues: set[str] | None = None
    if args.config is not None:
        try:
            known_queues = args.read_queue_names(args.config)
        except ValueError as exc:
            print(f"voxgate: invalid settings:\n{exc}", file=sys.stderr)
            return EXIT_USAGE
    files = _flow_files(args.paths)
    if not files:
        print("no flow files found", file=sys.stderr)
        return 1
    conflicts: dict[Path, list[Diagnostic]] = {}
    for folder in dict.fromkeys(folder for _, folder in files if folder is not None):
        conflicts.update(folder_conflicts([p for p, f in files if f == folder]))
    failed = False
    for path, _ in files:
        diagnostics = validate_file(path, known_queues) + conflicts.get(path, [])
        for diagnostic in diagnostics:
            print(diagnostic, file=sys.stderr)
        errors = [d for d in diagnostics if d.severity == "error" or args.strict]
        failed = failed or bool(errors)
        if not errors:
            print(f"{path}: ok")
    return 1 if failed else 0


def _load_for_run(path: str) -> tuple[Flow, FlowRegistry] | None:
    try:
        flow = load_flow(path).with_base_dir(Path(path).parent)
    except FlowError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        return None
    return flow, FlowRegistry(Path(path).parent)


@_quiet_when_stdout_closed
def run_simulate(args: argparse.Namespace) -> int:
    loaded = _load_for_run(args.flow)
    if loaded is None:
        return 1
    flow, registry = loaded

    def read_line() -> str | None:
        try:
            return input()
        except EOFError:
            return None

    print(f"flow {flow.flow}: type words for speech, #digits for keys, /hangup to end")
    asyncio.run(
        simulate(
            flow,
            read_line,
            sys.stdout,
            caller=args.caller,
            called=args.called,
            flows=registry.get,
            echo=not sys.stdin.isatty(),
            now=args.at,
        )
    )
    return 0


def _aware_time(text: str) -> dt.datetime:
    """Parse `--at`: an ISO 8601 time with a UTC offset, so that branches know its zone."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: expected ISO 8601") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"time {text!r} has no UTC offset: add one, such as -05:00 or Z"
        )
    return moment


@_quiet_when_stdout_closed
def run_test(args: argparse.Namespace) -> int:
    loaded = _load_for_run(args.flow)
    if loaded is None:
        return 1
    flow, registry = loaded
    try:
        script, source = load_script_with_source(Path(args.script))
    except FlowError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        return 1
    for warning in clock_warnings(script, source, flow, registry.get):
        print(warning, file=sys.stderr)
    reports = asyncio.run(run_script(script, flow, flows=registry.get))
    sys.stdout.write(format_reports(reports, source))
    return 0 if all(report.passed for report in reports) else 1


@_quiet_when_stdout_closed
def run_graph(args: argparse.Namespace) -> int:
    loaded = _load_for_run(args.flow)
    if loaded is None:
        return 1
    flow, _ = loaded
    kind = args.format
    if kind is None:
        suffix = Path(args.output).suffix.lower() if args.output else ""
        kind = {".svg": "svg", ".dot": "dot", ".gv": "dot"}.get(suffix, "mermaid")
    text = {"svg": to_svg, "mermaid": to_mermaid, "dot": to_dot}[kind](flow)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the IVR subcommands on their own (`python -m ivr.cli`)."""
    parser = argparse.ArgumentParser(prog="voxgate")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_commands(subparsers)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
