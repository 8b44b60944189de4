"""The `voxgate` command: `serve` runs a node; other packages add their tools.

`ivr.cli` adds the flow designer's commands (validate, simulate, test,
graph) and `acd.cli` adds the routing simulator; each subcommand stores a
`func` that returns the process exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voxgate import __version__
from voxgate.settings import SettingsError, load_settings

logger = logging.getLogger("voxgate")

EXIT_USAGE = 2
# The settings file of `serve` without --config, relative to the working directory.
DEFAULT_CONFIG = "config/voxgate.yaml"
# The soft limit of open files that `serve` sets when the hard limit is unlimited.
OPEN_FILES_WITHOUT_HARD_LIMIT = 65_536


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected a number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value}: expected 0-65535")
    return value


def _port_range(text: str) -> tuple[int, int]:
    low_text, sep, high_text = text.partition("-")
    if not sep:
        raise argparse.ArgumentTypeError(f"invalid port range {text!r}: expected LOW-HIGH")
    low, high = _port(low_text), _port(high_text)
    if low >= high:
        raise argparse.ArgumentTypeError(f"invalid port range {text!r}: LOW must be below HIGH")
    return low, high


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxgate", description="VoxGate telephony server for contact centers."
    )
    parser.add_argument("--version", action="version", version=f"voxgate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    serve = commands.add_parser("serve", help="run one node (SIP, RTP, HTTP, IVR, ACD)")
    serve.add_argument(
        "--config",
        type=Path,
        help=f"settings file (YAML); default: {DEFAULT_CONFIG} in the working directory,"
        " else the one in the VoxGate checkout",
    )
    serve.add_argument(
        "--sip-port", type=_port, help="SIP port for UDP and TCP (0 picks a free one)"
    )
    serve.add_argument("--http-port", type=_port, help="HTTP port (0 picks a free one)")
    serve.add_argument("--rtp-ports", type=_port_range, help="RTP port range LOW-HIGH")
    serve.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level"
    )
    serve.set_defaults(func=_serve)

    hasher = commands.add_parser(
        "hash-password", help="print the scrypt hash of an agent password for the settings file"
    )
    hasher.set_defaults(func=_hash_password)

    for module_name in ("ivr.cli", "acd.cli"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        if module_name == "ivr.cli":
            module.add_commands(commands, read_queue_names=_queue_names)
        else:
            module.add_commands(commands)
    return parser


def _queue_names(path: Path) -> set[str]:
    """Return the queue names of a settings file; raises SettingsError (a ValueError)."""
    return set(load_settings(path).acd.queues)


def default_config() -> Path:
    """Return the settings file that `serve` reads without `--config`.

    `config/voxgate.yaml` in the working directory comes first, then the one next to the
    installed package, so that a checkout's node starts from any folder.
    """
    in_working_dir = Path(DEFAULT_CONFIG)
    if in_working_dir.exists():
        return in_working_dir
    checkout = Path(__file__).resolve().parents[1] / DEFAULT_CONFIG
    return checkout if checkout.exists() else in_working_dir


def _serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.sip_port is not None:
        overrides["sip.port"] = args.sip_port
    if args.http_port is not None:
        overrides["http.port"] = args.http_port
    if args.rtp_ports is not None:
        overrides["rtp.port_low"], overrides["rtp.port_high"] = args.rtp_ports
    if args.log_level is not None:
        overrides["log.level"] = args.log_level
    try:
        settings = load_settings(args.config or default_config(), overrides)
    except SettingsError as exc:
        print(f"voxgate: invalid settings:\n{exc}", file=sys.stderr)
        if args.config is None:
            print("voxgate: name the settings file with --config FILE", file=sys.stderr)
        return EXIT_USAGE
    from voxgate.logs import configure_logging
    from voxgate.node import run_node

    configure_logging(settings.log.level)
    raise_open_file_limit()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run_node(settings))
    return uvloop.run(run_node(settings))


def raise_open_file_limit() -> None:
    """Raise the soft limit of open files to the hard limit, as servers with many sockets do.

    Each call's RTP/RTCP socket pair takes two descriptors, and kept pairs stay
    open (`rtp.socket_pool_size`), so a soft limit of 1,024, common under
    systemd, runs out at a few hundred calls. Without a hard limit the soft
    limit goes to OPEN_FILES_WITHOUT_HARD_LIMIT.
    """
    try:
        import resource
    except ImportError:  # not a Unix system
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = OPEN_FILES_WITHOUT_HARD_LIMIT if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        logger.warning(
            "open file limit stays at %d: raising it to %d failed: %s; raise the hard "
            "limit (ulimit -Hn, or LimitNOFILE in a systemd unit)",
            soft,
            target,
            exc,
        )
        return
    logger.info("open file limit raised from %d to %d", soft, target)


def _hash_password(args: argparse.Namespace) -> int:
    from signaling.webrtc.auth import hash_password

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\n")
    if not password:
        print("voxgate: the password is empty", file=sys.stderr)
        return EXIT_USAGE
    print(hash_password(password))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
