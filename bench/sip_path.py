"""CPU per SIP call of a whole node in one process, without SIPp and without the SIP socket.

`bench/sip_load.py` measures the node from outside, and on a shared machine
its CPU per call moves by 300-500 µs between rounds of one tree. This script
runs the same call path inside one process and counts its cost.
`voxgate.node.Node` starts as `voxgate serve` would, with the SIP endpoint
and transaction layer, `SipCallHandler`, the SDP answer, RTP sessions on the
socket pool, the media leg, an IVR session of the flow
`bench/flows/answer_hangup.yaml`, the event hub and the CDR recorder. Only
the sends of the SIP UDP transport are replaced. Each datagram the node
sends goes to a simulated caller in this process, which replies as
`bench/sipp/uac_invite_bye.xml` does (INVITE with a PCMU offer, ACK for the
200, 200 for the node's BYE). The caller's datagrams enter through the
transport's `datagram_received`, as uvloop delivers them. The caller's own
work (building three messages and parsing two per call) counts in the CPU
time too, alike for both trees of a `--baseline` run. The node's RTP and
RTCP packets go over loopback to two sockets of this script that are never
read, so the kernel drops them once their buffers are full.

Other processes on the machine slow the node down by evicting its caches
and taking its core, so one tree's repetitions still spread by 10-25 % on a
shared 2-core VM. The lowest of several repetitions is the least disturbed
one, and the count of Python function calls per call is exact and repeats
to within a call or two.

Each repetition starts a fresh node, runs `--warm-up` calls untimed, then
`--calls` calls with `--concurrency` of them in flight, and reads the process
CPU time (`time.process_time`: every thread, user and system) around them,
including a 0.3 s pause at the end so that the CDR writer's last batch
counts. A separate pass of `--profile-calls` calls counts the Python
function calls per call with `sys.setprofile` and `threading.setprofile`;
`--top N` lists the N functions called most.

The node's log goes to a file at `--log-level` (INFO by default, as
`voxgate serve` runs), with the format of `voxgate.logs`.

Differences from `voxgate serve` under `sip_load.py`, each chosen so that
runs repeat: speech models are not preloaded (the flow never listens), and
the RTP socket pool keeps up to 1,600 pairs over a range of 4,000 ports. The
tight loop runs about 3,000 calls a second on a 2-vCPU machine, so about 1,500
pairs rest in the 0.5 s quarantine. With a smaller pool most calls would bind
a fresh pair and close another (about 30 µs per call). A node at 1,000 calls/s
with the default pool of 1,024 pairs does not.

`--baseline PATH` runs each repetition a second time with the code of another
source tree (for example `git archive` of main, with its C extension built),
as a subprocess of this script with `PYTHONPATH=PATH`. The two trees
alternate, with the order swapped in every other repetition, and the script
prints the medians of both and the median of the changes within each
repetition. Nothing of this script's own tree is imported in
that subprocess, so the other tree needs no copy of it.

Usage:
    PYTHONPATH=. python bench/sip_path.py --calls 2000 --repeat 5
    PYTHONPATH=. python bench/sip_path.py --calls 2000 --repeat 7 --baseline /tmp/base
    PYTHONPATH=. python bench/sip_path.py --calls 0 --repeat 1 --profile-calls 500 --top 40
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

HOST = "127.0.0.1"
REPOSITORY = Path(__file__).resolve().parents[1]
FLOWS = REPOSITORY / "bench" / "flows"
PORT_RANGE_SIZE = 4_000
POOL_PAIRS = 1_600
END_PAUSE_S = 0.3
MESSAGE_TIMEOUT_S = 10.0
CALLER_PORT = 5070

INVITE = (
    "INVITE sip:1000@{host}:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {host}:{caller_port};branch=z9hG4bK-{pid}-{number}-0\r\n"
    'From: "bench" <sip:bench@{host}:{caller_port}>;tag={pid}SIPpTag00{number}\r\n'
    "To: <sip:1000@{host}:{port}>\r\n"
    "Call-ID: {number}-{pid}@{host}\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:bench@{host}:{caller_port}>\r\n"
    "Max-Forwards: 70\r\n"
    "Subject: bench\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {length}\r\n"
    "\r\n"
)
OFFER = (
    "v=0\r\n"
    "o=bench 53655765 2353687637 IN IP4 {host}\r\n"
    "s=-\r\n"
    "c=IN IP4 {host}\r\n"
    "t=0 0\r\n"
    "m=audio {media_port} RTP/AVP 0 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
)
ACK = (
    "ACK {target} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {host}:{caller_port};branch=z9hG4bK-{pid}-{number}-2\r\n"
    'From: "bench" <sip:bench@{host}:{caller_port}>;tag={pid}SIPpTag00{number}\r\n'
    "{to}\r\n"
    "Call-ID: {number}-{pid}@{host}\r\n"
    "CSeq: 1 ACK\r\n"
    "Contact: <sip:bench@{host}:{caller_port}>\r\n"
    "Max-Forwards: 70\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)
BYE_OK = (
    "SIP/2.0 200 OK\r\n"
    "{via}\r\n"
    "{from_}\r\n"
    "{to}\r\n"
    "{call_id}\r\n"
    "{cseq}\r\n"
    "Contact: <sip:bench@{host}:{caller_port}>\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)


@dataclass
class Message:
    """The start line and the header lines of one datagram that the node sent."""

    start: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes) -> Message:
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        start, *lines = head.split("\r\n")
        message = cls(start)
        for line in lines:
            name = line.split(":", 1)[0].strip().lower()
            message.headers.setdefault(name, line)
        return message

    def value(self, name: str) -> str:
        return self.headers[name].split(":", 1)[1].strip()


class Caller:
    """The simulated SIPp caller, which builds its requests and replies from the node's output."""

    def __init__(self, deliver: Callable[[bytes], None], sip_port: int, media_port: int) -> None:
        self._deliver = deliver
        self._sip_port = sip_port
        self._media_port = media_port
        self._pid = os.getpid()
        self._waiting: dict[str, asyncio.Queue[Message]] = {}
        self.unexpected = 0

    def on_sent(self, data: bytes) -> None:
        """Route a datagram from the node to the call whose Call-ID it carries.

        Provisional responses (the 100 Trying) need no reply and are dropped unparsed.
        """
        if data.startswith(b"SIP/2.0 1"):
            return
        message = Message.parse(data)
        queue = self._waiting.get(message.value("call-id"))
        if queue is None:
            self.unexpected += 1
            return
        queue.put_nowait(message)

    async def call(self, number: int) -> None:
        """Run one call: INVITE, wait for 200, ACK, wait for BYE, 200."""
        call_id = f"{number}-{self._pid}@{HOST}"
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._waiting[call_id] = queue
        fields = {
            "host": HOST,
            "port": self._sip_port,
            "caller_port": CALLER_PORT,
            "pid": self._pid,
            "number": number,
        }
        try:
            body = OFFER.format(host=HOST, media_port=self._media_port).encode()
            head = INVITE.format(length=len(body), **fields).encode()
            self._deliver(head + body)
            ok = await self._next(queue, lambda message: message.start.startswith("SIP/2.0 200"))
            target = ok.value("contact").strip("<>").split(">")[0]
            self._deliver(ACK.format(target=target, to=ok.headers["to"], **fields).encode())
            bye = await self._next(queue, lambda message: message.start.startswith("BYE "))
            reply = BYE_OK.format(
                via=bye.headers["via"],
                from_=bye.headers["from"],
                to=bye.headers["to"],
                call_id=bye.headers["call-id"],
                cseq=bye.headers["cseq"],
                host=HOST,
                caller_port=CALLER_PORT,
            )
            self._deliver(reply.encode())
        finally:
            del self._waiting[call_id]

    async def _next(
        self, queue: asyncio.Queue[Message], wanted: Callable[[Message], bool]
    ) -> Message:
        """Return the next message that `wanted` accepts, skipping any other."""
        async with asyncio.timeout(MESSAGE_TIMEOUT_S):
            while True:
                message = await queue.get()
                if wanted(message):
                    return message


class CapturingTransport(asyncio.DatagramTransport):
    """The SIP socket's transport with its sends handed to the caller instead of the socket.

    Everything but `sendto` goes to the real transport, so the overload guard
    still reads the real socket's receive queue.
    """

    def __init__(self, real: asyncio.DatagramTransport, on_sent: Callable[[bytes], None]) -> None:
        super().__init__()
        self._real = real
        self._on_sent = on_sent
        self.sent = 0

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.sent += 1
        self._on_sent(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._real.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._real.is_closing()

    def close(self) -> None:
        self._real.close()


def free_port_range(size: int) -> int:
    """Return the even first port of `size` UDP ports that are free right now.

    After a port in use, the next try starts just past it, so the search walks
    the gaps between other processes' sockets. A `sip_load.py` run on the
    machine keeps a few hundred sockets open, most of them in the kernel's
    ephemeral range (32768-60999 by default), where no 4,000-port gap may
    be left. The search also covers 10000-32767, where only fixed binds land.
    """
    low = random.randrange(10_000, 60_000 - size, 2)
    for _ in range(1000):
        probes = []
        port = low
        try:
            for port in range(low, low + size):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind((HOST, port))
        except OSError:
            low = port + 2 - port % 2
            if low + size > 60_000:
                low = 10_000
            continue
        finally:
            for probe in probes:
                probe.close()
        return low
    raise RuntimeError(f"no {size} free UDP ports in a row found after 1000 tries")


def media_sink() -> tuple[socket.socket, socket.socket]:
    """Bind an RTP/RTCP pair of sockets for the caller's media, never read."""
    for _ in range(100):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind((HOST, 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            try:
                rtcp.bind((HOST, port + 1))
                return rtp, rtcp
            except OSError:
                pass
        rtp.close()
        rtcp.close()
    raise RuntimeError("no free RTP/RTCP port pair for the caller's media after 100 tries")


def write_settings(workdir: Path, log_level: str) -> Path:
    low = free_port_range(PORT_RANGE_SIZE)
    document = {
        "log": {"level": log_level},
        "sip": {"host": HOST, "port": 0},
        "http": {"host": HOST, "port": 0},
        "rtp": {
            "host": HOST,
            "port_low": low,
            "port_high": low + PORT_RANGE_SIZE - 1,
            "socket_pool_size": POOL_PAIRS,
        },
        "ivr": {
            "flows_dir": str(FLOWS),
            "default_flow": "answer_hangup",
            "prompt_cache_dir": str(workdir / "prompts"),
        },
        "asr": {"preload": False},
    }
    path = workdir / "voxgate.yaml"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@contextmanager
def logging_to_file(level: str, path: Path) -> Iterator[None]:
    """Set up logging as `voxgate serve` does, but into `path`, and restore it afterwards."""
    from voxgate.logs import configure_logging

    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("aioice", "aiortc", "asyncio")}
    # configure_logging turns these module switches off for the whole process.
    switches = (
        logging.logThreads, logging.logProcesses, logging.logMultiprocessing, logging._srcfile
    )  # fmt: skip
    with path.open("a", encoding="utf-8") as stream:
        configure_logging(level)
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        try:
            yield
        finally:
            # The handler batches lines, so write its buffered lines before the file closes.
            handler.close()
            root.removeHandler(handler)
            for old in saved_handlers:
                root.addHandler(old)
            root.setLevel(saved_level)
            for name, noisy_level in noisy.items():
                logging.getLogger(name).setLevel(noisy_level)
            (
                logging.logThreads, logging.logProcesses, logging.logMultiprocessing,
                logging._srcfile,
            ) = switches  # fmt: skip


class CallCounter:
    """Counts Python function calls, per function, through the profile hook."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, int, str]] = collections.Counter()

    def hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            self.counts[(code.co_filename, code.co_firstlineno, code.co_name)] += 1

    def __enter__(self) -> CallCounter:
        threading.setprofile(self.hook)
        sys.setprofile(self.hook)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)
        threading.setprofile(None)


async def run_calls(caller: Caller, first: int, count: int, concurrency: int) -> None:
    """Run `count` calls numbered from `first`, `concurrency` at a time."""
    numbers = iter(range(first, first + count))

    async def worker() -> None:
        for number in numbers:
            await caller.call(number)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))


async def measure(args: argparse.Namespace, *, freeze: bool = True) -> dict[str, Any]:
    """Start a node, run the calls, and return the measurements of one repetition.

    `freeze` runs `freeze_startup_objects` after the start, as `voxgate serve`
    does. It changes the collector's settings for the rest of the process.
    """
    from signaling.sip.endpoint import SipEndpoint
    from voxgate.cli import raise_open_file_limit
    from voxgate.node import Node, freeze_startup_objects
    from voxgate.settings import load_settings

    # The kept socket pairs take 3,200 descriptors, as many as `voxgate serve` allows itself.
    raise_open_file_limit()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sip-path-")))
        stack.enter_context(logging_to_file(args.log_level, workdir / "voxgate.log"))
        settings = load_settings(write_settings(workdir, args.log_level))
        node = Node(settings)
        rtp_sink, rtcp_sink = media_sink()
        ended = 0
        try:
            await node.start()
            if freeze:
                freeze_startup_objects()
            endpoint = node._sip
            assert isinstance(endpoint, SipEndpoint) and endpoint._udp is not None
            udp = endpoint._udp
            real = udp._transport
            assert real is not None

            def deliver(data: bytes) -> None:
                udp.datagram_received(data, (HOST, CALLER_PORT))

            caller = Caller(deliver, endpoint.port, rtp_sink.getsockname()[1])
            capture = CapturingTransport(real, caller.on_sent)
            udp._transport = capture

            def count_end(event: Any) -> None:
                nonlocal ended
                if event.kind == "call.ended":
                    ended += 1

            node.hub.listen(count_end)
            await run_calls(caller, 0, args.warm_up, args.concurrency)
            await asyncio.sleep(END_PAUSE_S)

            gc.collect()
            start_cpu = time.process_time()
            start_wall = time.perf_counter()
            await run_calls(caller, args.warm_up, args.calls, args.concurrency)
            await asyncio.sleep(END_PAUSE_S)
            cpu_s = time.process_time() - start_cpu
            wall_s = time.perf_counter() - start_wall - END_PAUSE_S

            calls_per_call = 0.0
            top: list[tuple[str, int]] = []
            if args.profile_calls:
                first = args.warm_up + args.calls
                with CallCounter() as counter:
                    await run_calls(caller, first, args.profile_calls, args.concurrency)
                    await asyncio.sleep(END_PAUSE_S)
                calls_per_call = sum(counter.counts.values()) / args.profile_calls
                top = [
                    (f"{Path(filename).name}:{line} {name}", count)
                    for (filename, line, name), count in counter.counts.most_common(args.top)
                ]
            total = args.warm_up + args.calls + args.profile_calls
            return {
                "cpu_us_per_call": 1e6 * cpu_s / args.calls if args.calls else 0.0,
                "calls_per_s": args.calls / wall_s if args.calls and wall_s > 0 else 0.0,
                "python_calls_per_call": calls_per_call,
                "top": top,
                "ended": ended,
                "expected": total,
                "unexpected": caller.unexpected,
            }
        finally:
            await node.stop()
            rtp_sink.close()
            rtcp_sink.close()


def run_repetition(args: argparse.Namespace) -> dict[str, Any]:
    import uvloop

    return uvloop.run(measure(args))


def run_other_tree(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one repetition in a subprocess with the code of `tree`; return its measurements."""
    command = [
        sys.executable, __file__, "--json", "--repeat", "1",
        "--calls", str(args.calls), "--warm-up", str(args.warm_up),
        "--concurrency", str(args.concurrency), "--profile-calls", str(args.profile_calls),
        "--log-level", args.log_level, "--top", str(args.top),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    completed = subprocess.run(
        command, cwd=tree, env=env, capture_output=True, text=True, timeout=600
    )
    if completed.returncode != 0:
        error_tail = "\n".join(completed.stderr.strip().splitlines()[-20:])
        raise RuntimeError(
            f"the repetition with the code of {tree} failed with exit status "
            f"{completed.returncode}; the end of its error output:\n{error_tail}"
        )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def describe(name: str, results: list[dict[str, Any]]) -> list[str]:
    cpu = [result["cpu_us_per_call"] for result in results]
    lines = [
        f"{name}: CPU µs/call per repetition: " + ", ".join(f"{value:.0f}" for value in cpu),
        f"{name}: median CPU µs/call: {statistics.median(cpu):.0f}, lowest {min(cpu):.0f}",
        f"{name}: median calls/s of the loop: "
        f"{statistics.median(result['calls_per_s'] for result in results):.0f}",
    ]
    python_calls = [result["python_calls_per_call"] for result in results]
    if any(python_calls):
        lines.append(
            f"{name}: Python function calls per call: {statistics.median(python_calls):.0f}"
        )
    missing = sum(result["expected"] - result["ended"] for result in results)
    unexpected = sum(result["unexpected"] for result in results)
    if missing or unexpected:
        lines.append(
            f"{name}: WARNING: {missing} calls without call.ended, {unexpected} stray datagrams"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--calls", type=int, default=2000, help="timed calls per repetition (0-20000)"
    )
    parser.add_argument("--warm-up", type=int, default=300, help="untimed calls first (0-5000)")
    parser.add_argument("--concurrency", type=int, default=4, help="calls in flight (1-200)")
    parser.add_argument(
        "--repeat", type=int, default=5, help="repetitions; medians are printed (1-50)"
    )
    parser.add_argument(
        "--profile-calls",
        type=int,
        default=300,
        help="calls of the pass that counts Python function calls (0 skips it)",
    )
    parser.add_argument("--top", type=int, default=0, help="list the N functions called most")
    parser.add_argument("--log-level", default="INFO", help="the node's log level (INFO as served)")
    parser.add_argument("--baseline", type=Path, help="another source tree to run beside this one")
    parser.add_argument("--json", action="store_true", help="print one JSON line per repetition")
    args = parser.parse_args()
    if not 0 <= args.calls <= 20_000 or not 0 <= args.warm_up <= 5_000:
        parser.error("--calls must be 0-20000 and --warm-up 0-5000")
    if not 1 <= args.concurrency <= 200 or not 1 <= args.repeat <= 50:
        parser.error("--concurrency must be 1-200 and --repeat 1-50")
    if not 0 <= args.profile_calls <= 5_000:
        parser.error("--profile-calls must be 0-5000")
    if args.baseline is not None and not (args.baseline / "voxgate" / "node.py").is_file():
        parser.error(f"--baseline {args.baseline} has no voxgate/node.py")

    ours: list[dict[str, Any]] = []
    baseline: list[dict[str, Any]] = []
    for repetition in range(args.repeat):
        if args.baseline is None:
            ours.append(run_repetition(args))
        else:
            # Both trees run as subprocesses, so neither inherits the other's warm caches.
            order = [(REPOSITORY, ours), (args.baseline, baseline)]
            for tree, results in order if repetition % 2 == 0 else order[::-1]:
                results.append(run_other_tree(tree, args))
        if args.json:
            print(json.dumps(ours[-1]), flush=True)
    if args.json:
        return
    if args.baseline is not None:
        for line in describe("baseline", baseline):
            print(line)
        change = statistics.median(r["cpu_us_per_call"] for r in ours) / statistics.median(
            r["cpu_us_per_call"] for r in baseline
        )
        print(f"change of the median: {100 * (change - 1):+.1f} %")
        # The two runs of a repetition follow each other, so they meet similar load.
        ratios = [
            mine["cpu_us_per_call"] / theirs["cpu_us_per_call"]
            for mine, theirs in zip(ours, baseline, strict=True)
        ]
        print(
            "median change within a repetition: "
            f"{100 * (statistics.median(ratios) - 1):+.1f} % "
            f"(each: {', '.join(f'{100 * (ratio - 1):+.0f}' for ratio in ratios)})"
        )
    for line in describe("this tree", ours):
        print(line)
    for name, count in ours[-1]["top"]:
        print(f"{count / max(1, args.profile_calls):8.1f}  {name}")


if __name__ == "__main__":
    main()
