"""The `voxgate` subcommands of the IVR: validate, simulate, test and graph."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ivr.loader import Diagnostic, FlowError, load_flow_with_source
from ivr.registry import FLOW_SUFFIXES
from ivr.validator import check_flow


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the IVR subcommands; each sets `func` returning an exit code."""
    validate = subparsers.add_parser("validate", help="check flow files (schema and static checks)")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="flow files or folders")
    validate.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1)")
    validate.set_defaults(func=run_validate)


def _flow_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in FLOW_SUFFIXES))
        else:
            files.append(path)
    return files


def validate_file(path: Path) -> list[Diagnostic]:
    """Return every schema error, or every static-check finding, of one flow file."""
    try:
        flow, source = load_flow_with_source(path)
    except FlowError as exc:
        return exc.diagnostics
    return check_flow(flow, source, path.parent)


def run_validate(args: argparse.Namespace) -> int:
    files = _flow_files(args.paths)
    if not files:
        print("no flow files found", file=sys.stderr)
        return 1
    failed = False
    for path in files:
        diagnostics = validate_file(path)
        for diagnostic in diagnostics:
            print(diagnostic, file=sys.stderr)
        errors = [d for d in diagnostics if d.severity == "error" or args.strict]
        failed = failed or bool(errors)
        if not errors:
            print(f"{path}: ok")
    return 1 if failed else 0


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
