"""SIP call load: VoxGate against a SIPp UAS, interleaved, at rising call rates.

Every call is the lightest full call: INVITE with a PCMU offer, 100, 200 with
an answer, ACK, then the server sends BYE and the caller answers 200. The
reference server is SIPp with `bench/sipp/uas_answer_bye.xml`; VoxGate runs
`voxgate serve` with the flow `bench/flows/answer_hangup.yaml`. The caller is
SIPp with `bench/sipp/uac_invite_bye.xml` in both cases.

For each round, each rate and each server, a fresh server process is started,
SIPp places `rate x --step-seconds` calls (at most `--max-calls`) at that
rate, and the script reads:

- the server's CPU time (utime + stime of /proc/PID/stat) before and after
  the step, divided by the INVITEs sent;
- INVITE -> 200 times from SIPp's `-trace_rtt` file (1 ms resolution), and
  from the same file the rate SIPp reached (INVITEs answered per second of
  sending);
- failed calls (SIPp's FailedCall: timeouts, unexpected messages) and 503s,
  with and without a Retry-After header (SIPp's `-trace_counts`).

A server "holds" a rate in a step when every call got its 200 and ended
without a SIPp failure (no 503 either), SIPp reached at least 95 % of the
rate, and p99 < 50 ms. A round's maximum is the highest rate up to which
every step was held. After the rate steps, each server runs one more step at
1.2 x its maximum of that round, and the script reports the share of the
calls without a 200 that got a 503 within T1 (500 ms, before any INVITE
retransmission), and how many 503s carried Retry-After. VoxGate rejects new
calls while its SIP socket's receive queue is long (the default overload
guard) and above `sip.max_calls`; `--overload-max-calls` sets a call limit
for its overload steps only.

The servers alternate order from round to round. The summary quotes medians
over rounds, and as the maximum rate the highest rate that it and every lower
rate held in more than half of the rounds.

`--baseline PATH` adds a third server, "baseline": `voxgate serve` from
another source tree (a worktree of main, say), run in the same rounds with the
order rotating, so that a change is measured against its base side by side.
Each step also records the 1-minute load average at its start.

Everything binds to 127.0.0.1. Bounds: each step stops SIPp after
`--step-timeout` seconds, and no step starts after `--time-limit` seconds.

Usage: PYTHONPATH=. python bench/sip_load.py [--rounds 3] [--rates 50,100,...] [--json FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
REPOSITORY = BENCH.parent
SIPP = "/usr/bin/sipp"
UAC_SCENARIO = BENCH / "sipp" / "uac_invite_bye.xml"
UAS_SCENARIO = BENCH / "sipp" / "uas_answer_bye.xml"
FLOWS = BENCH / "flows"
HOST = "127.0.0.1"
# Start-up loads the Korean speech model of bench/flows/eos_reply.yaml, which
# took over 30 s at a load average of 9.
START_TIMEOUT_S = 90.0
START_ATTEMPTS = 3
STOP_TIMEOUT_S = 10.0
TARGET_P99_MS = 50.0
MIN_RATE_SHARE = 0.95
OVERLOAD_FACTOR = 1.2
IMMEDIATE_503_MS = 500.0
TARGET_CPU_RATIO = 4.0
TARGET_RATE = 1000
TARGET_IMMEDIATE_SHARE = 0.95
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVERS = ("sipp", "voxgate")


@dataclass
class StepResult:
    """Measurements of one server at one call rate in one round."""

    server: str
    round: int
    rate: int
    planned: int
    sent: int = 0
    answered: int = 0
    failed: int = 0
    rejected_503: int = 0
    retry_after_503: int = 0
    immediate_503: int = 0
    achieved_rate: float = 0.0
    cpu_s: float = 0.0
    setup_p50_ms: float = math.nan
    setup_p99_ms: float = math.nan
    elapsed_s: float = 0.0
    overload: bool = False
    load_average: float = math.nan
    notes: list[str] = field(default_factory=list)

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu_s * 1e6 / self.sent if self.sent else math.nan

    @property
    def held(self) -> bool:
        return (
            self.sent == self.planned
            and self.answered == self.planned
            and self.failed == 0
            and self.rejected_503 == 0
            and self.achieved_rate >= MIN_RATE_SHARE * self.rate
            and self.setup_p99_ms < TARGET_P99_MS
        )

    @property
    def unanswered(self) -> int:
        return self.planned - self.answered

    @property
    def immediate_503_share(self) -> float:
        return self.immediate_503 / self.unanswered if self.unanswered else math.nan


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """Return utime + stime of process `pid` (all its threads) in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of proc(5), and this slice starts at field 3.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a process this script started: SIGTERM, then SIGKILL after STOP_TIMEOUT_S."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def sipp_server(workdir: Path, lifetime_s: float) -> Iterator[tuple[int, int]]:
    """Run the SIPp reference UAS; yields (pid, SIP port)."""
    port = free_port()
    command = [
        SIPP, "-sf", str(UAS_SCENARIO), "-i", HOST, "-p", str(port), "-mp", str(free_port()),
        "-nostdin", "-timeout", f"{int(lifetime_s)}s", "-buff_size", "4194304",
    ]  # fmt: skip
    with (workdir / "uas.out").open("wb") as out:
        process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.3)
        if process.poll() is not None:
            raise RuntimeError(f"SIPp UAS exited with {process.returncode}; see {workdir}")
        yield process.pid, port
    finally:
        stop_process(process)


@contextmanager
def voxgate_server(
    workdir: Path, log_level: str, settings: dict[str, Any], tree: Path = REPOSITORY
) -> Iterator[tuple[int, int]]:
    """Run `voxgate serve` with the answer_hangup flow; yields (pid, SIP port) once healthy.

    `settings` maps dotted keys (`sip.max_calls`) to values set over the defaults.
    `tree` is the source tree whose code runs; the flows are always this tree's.
    A node that exits during start-up is started again with other ports, up to
    START_ATTEMPTS times: a port that `free_port` found free can be taken by
    another process before the node binds it.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        with ExitStack() as stack:
            try:
                pid, port = stack.enter_context(
                    _voxgate_process(workdir, log_level, settings, tree)
                )
            except ServerExited:
                if attempt == START_ATTEMPTS:
                    raise
                print(f"voxgate exited during start-up (attempt {attempt}); retrying", flush=True)
                continue
            yield pid, port
            return


class ServerExited(RuntimeError):
    """The server process ended before it was healthy."""


@contextmanager
def _voxgate_process(
    workdir: Path, log_level: str, settings: dict[str, Any], tree: Path
) -> Iterator[tuple[int, int]]:
    sip_port, http_port = free_port(), free_port(socket.SOCK_STREAM)
    low = 40_000 + 2 * (os.getpid() % 5_000)
    document: dict[str, Any] = {
        "log": {"level": log_level},
        "ivr": {
            "flows_dir": str(FLOWS),
            "default_flow": "answer_hangup",
            "prompt_cache_dir": str(workdir / "prompts"),
        },
    }
    for dotted, value in settings.items():
        section, _, key = dotted.partition(".")
        document.setdefault(section, {})[key] = value
    config = workdir / "voxgate.yaml"
    config.write_text(json.dumps(document))
    command = [
        sys.executable, "-m", "voxgate", "serve", "--config", str(config),
        "--sip-port", str(sip_port), "--http-port", str(http_port),
        "--rtp-ports", f"{low}-{low + 3_999}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with (workdir / "voxgate.log").open("wb") as out:
        process = subprocess.Popen(command, cwd=tree, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(process, http_port, workdir)
        yield process.pid, sip_port
    finally:
        stop_process(process)


def wait_healthy(process: subprocess.Popen[bytes], http_port: int, workdir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    url = f"http://{HOST}:{http_port}/healthz"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerExited(f"voxgate exited with {process.returncode}; see {workdir}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"voxgate not healthy after {START_TIMEOUT_S} s; see {workdir}")


def run_caller(workdir: Path, target_port: int, rate: int, calls: int, timeout_s: float) -> float:
    """Run the SIPp UAC until it ends or `timeout_s` passes, and return its wall time in seconds."""
    command = [
        SIPP, "-sf", str(UAC_SCENARIO), "-i", HOST, "-p", str(free_port()),
        "-mp", str(free_port()), "-nostdin", "-r", str(rate), "-m", str(calls),
        "-l", str(calls), "-recv_timeout", "5000", "-timeout", f"{int(timeout_s)}s",
        "-buff_size", "4194304", "-trace_rtt", "-rtt_freq", "1", "-trace_counts",
        "-trace_stat", "-stf", "stat.csv", "-fd", "1", f"{HOST}:{target_port}",
    ]  # fmt: skip
    started = time.monotonic()
    with (workdir / "uac.out").open("wb") as out:
        process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=timeout_s + 5)
        except subprocess.TimeoutExpired:
            stop_process(process)
    return time.monotonic() - started


def last_csv_row(path: Path) -> dict[str, str]:
    with path.open(newline="") as file:
        rows = list(csv.reader(file, delimiter=";"))
    if len(rows) < 2:
        raise ValueError(f"{path} has no data row")
    return dict(zip(rows[0], rows[-1], strict=False))


def count_of(counts: dict[str, str], suffix: str) -> int:
    """Return the first -trace_counts column named `<index>_<message>_<kind>` ending in `suffix`."""
    for name, value in counts.items():
        if name.endswith(suffix):
            return int(value)
    return 0


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; NaN for an empty list."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def read_caller_results(workdir: Path, result: StepResult) -> None:
    counts_files = list(workdir.glob("*_counts.csv"))
    stat_file = workdir / "stat.csv"
    if not counts_files or not stat_file.exists():
        result.notes.append("SIPp wrote no statistics")
        return
    counts = last_csv_row(counts_files[0])
    result.sent = count_of(counts, "_INVITE_Sent")
    result.answered = count_of(counts, "_200_Recv")
    result.rejected_503 = count_of(counts, "_503_Recv")
    # The scenario's ACKs in order: for the 200, for a 503 without Retry-After, for one with it.
    acks = [int(value) for name, value in counts.items() if name.endswith("_ACK_Sent")]
    result.retry_after_503 = acks[2] if len(acks) == 3 else 0
    stats = last_csv_row(stat_file)
    result.failed = int(stats.get("FailedCall(C)", 0))
    setup: list[float] = []
    reject: list[float] = []
    # Send time of each INVITE = time the response arrived - its response time.
    sent_at: list[float] = []
    for rtt_file in workdir.glob("*_rtt.csv"):
        with rtt_file.open(newline="") as file:
            for row in csv.DictReader(file, delimiter=";"):
                timer = (row.get("rtd_no") or "").strip()
                value = float(row["response_time_ms"])
                (setup if timer == "setup" else reject).append(value)
                sent_at.append(float(row["Date_ms"]) - value)
    if len(sent_at) > 1 and max(sent_at) > min(sent_at):
        result.achieved_rate = (len(sent_at) - 1) * 1000 / (max(sent_at) - min(sent_at))
    result.setup_p50_ms = percentile(setup, 0.50)
    result.setup_p99_ms = percentile(setup, 0.99)
    result.immediate_503 = sum(1 for value in reject if value < IMMEDIATE_503_MS)


def run_step(
    server: str, round_number: int, rate: int, args: argparse.Namespace, *, overload: bool = False
) -> StepResult:
    calls = min(rate * args.step_seconds, args.max_calls)
    result = StepResult(server, round_number, rate, calls, overload=overload)
    result.load_average = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix=f"{server}-{rate}-", dir=args.workdir))
    lifetime = args.step_timeout + START_TIMEOUT_S
    settings = dict(args.voxgate_settings)
    if overload and args.overload_max_calls and "sip.max_calls" not in settings:
        settings["sip.max_calls"] = args.overload_max_calls
    context = (
        sipp_server(workdir, lifetime)
        if server == "sipp"
        else voxgate_server(
            workdir, args.log_level, settings, args.baseline if server == "baseline" else REPOSITORY
        )
    )
    with context as (pid, port):
        cpu_before = cpu_seconds(pid)
        result.elapsed_s = run_caller(workdir, port, rate, calls, args.step_timeout)
        result.cpu_s = cpu_seconds(pid) - cpu_before
    read_caller_results(workdir, result)
    return result


def max_held(results: list[StepResult], server: str, round_number: int) -> int | None:
    """Return the highest rate of the round up to which every rate step was held, or None.

    A held step above a failed one does not count, because a lucky step on a
    noisy machine is not a rate the server sustains.
    """
    steps = sorted(
        (r for r in results if r.server == server and r.round == round_number and not r.overload),
        key=lambda r: r.rate,
    )
    best = None
    for step in steps:
        if not step.held:
            break
        best = step.rate
    return best


def max_held_by_majority(results: list[StepResult], server: str, rates: list[int]) -> int | None:
    """Return the highest rate that this and every lower rate held in more than half the rounds."""
    best = None
    for rate in sorted(rates):
        steps = [r for r in results if r.server == server and r.rate == rate and not r.overload]
        if not steps or 2 * sum(r.held for r in steps) <= len(steps):
            break
        best = rate
    return best


def describe(result: StepResult) -> str:
    return (
        f"{result.server:8} r{result.round} {result.rate:5d}/s calls {result.planned:5d} "
        f"sent {result.sent:5d} ok {result.answered:5d} fail {result.failed:5d} "
        f"503 {result.rejected_503:5d} ({result.immediate_503} < {IMMEDIATE_503_MS:.0f} ms, "
        f"{result.retry_after_503} with Retry-After) "
        f"rate {result.achieved_rate:7.1f} "
        f"cpu {result.cpu_us_per_call:8.0f} us/call p50 {result.setup_p50_ms:5.0f} "
        f"p99 {result.setup_p99_ms:6.0f} ms {'held' if result.held else '-'}"
    )


def median(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def summarize(results: list[StepResult], rates: list[int], rounds: int) -> str:
    lines = [
        "| rate /s | SIPp µs/call | VoxGate µs/call | ratio | SIPp p50/p99 ms "
        "| VoxGate p50/p99 ms | VoxGate failed | VoxGate 503 | held (SIPp, VoxGate) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rate in rates:
        steps = {
            s: [r for r in results if r.rate == rate and r.server == s and not r.overload]
            for s in SERVERS
        }
        if not steps["sipp"] or not steps["voxgate"]:
            continue
        ref_cpu = median([r.cpu_us_per_call for r in steps["sipp"]])
        our_cpu = median([r.cpu_us_per_call for r in steps["voxgate"]])
        held = ", ".join(f"{sum(r.held for r in steps[s])}/{len(steps[s])}" for s in SERVERS)
        lines.append(
            f"| {rate} | {ref_cpu:.0f} | {our_cpu:.0f} | {our_cpu / ref_cpu:.1f} "
            f"| {median([r.setup_p50_ms for r in steps['sipp']]):.0f}"
            f" / {median([r.setup_p99_ms for r in steps['sipp']]):.0f} "
            f"| {median([r.setup_p50_ms for r in steps['voxgate']]):.0f}"
            f" / {median([r.setup_p99_ms for r in steps['voxgate']]):.0f} "
            f"| {median([float(r.failed) for r in steps['voxgate']]):.0f} "
            f"| {median([float(r.rejected_503) for r in steps['voxgate']]):.0f} | {held} |"
        )
    lines.append("")
    for server in [
        s for s in ("sipp", "baseline", "voxgate") if any(r.server == s for r in results)
    ]:
        maxima = [max_held(results, server, n) for n in range(1, rounds + 1)]
        shown = ", ".join(str(m) if m is not None else "none" for m in maxima)
        majority = max_held_by_majority(results, server, rates)
        lines.append(
            f"{server}: max rate held in most rounds (and every lower rate too): "
            f"{majority or 'none'} calls/s (p99 < {TARGET_P99_MS:.0f} ms, every call answered); "
            f"per round {shown}"
        )
        overload = [r for r in results if r.server == server and r.overload]
        for step in overload:
            share = (
                "every call answered"
                if step.unanswered == 0
                else f"{100 * step.immediate_503_share:.0f} % of the calls without 200"
            )
            lines.append(
                f"  round {step.round} at {step.rate}/s: {step.unanswered} of {step.planned} "
                f"without 200, {step.rejected_503} got 503 ({step.retry_after_503} with "
                f"Retry-After), {step.immediate_503} within {IMMEDIATE_503_MS:.0f} ms ({share})"
            )
    lines += ["", *target_lines(results, rates), *baseline_lines(results, rates)]
    return "\n".join(lines)


def _pair(steps: dict[str, list[StepResult]], name: str) -> str:
    """Median of field `name` for the baseline and VoxGate, as "baseline, VoxGate"."""
    return ", ".join(
        f"{median([float(getattr(r, name)) for r in steps[s]]):.0f}"
        for s in ("baseline", "voxgate")
    )


def baseline_lines(results: list[StepResult], rates: list[int]) -> list[str]:
    """Return the baseline tree beside VoxGate per rate (medians), or nothing without one."""
    if not any(r.server == "baseline" for r in results):
        return []
    lines = [
        "",
        "| rate /s | SIPp µs/call | baseline µs/call | VoxGate µs/call | change "
        "| p50/p99 ms baseline, VoxGate | failed baseline, VoxGate | 503 baseline, VoxGate "
        "| held baseline, VoxGate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rate in rates:
        steps = {
            s: [r for r in results if r.rate == rate and r.server == s and not r.overload]
            for s in ("sipp", "baseline", "voxgate")
        }
        if not all(steps.values()):
            continue
        cpu = {s: median([r.cpu_us_per_call for r in steps[s]]) for s in steps}
        latency = ", ".join(
            f"{median([r.setup_p50_ms for r in steps[s]]):.0f}"
            f"/{median([r.setup_p99_ms for r in steps[s]]):.0f}"
            for s in ("baseline", "voxgate")
        )
        held = ", ".join(
            f"{sum(r.held for r in steps[s])}/{len(steps[s])}" for s in ("baseline", "voxgate")
        )
        lines.append(
            f"| {rate} | {cpu['sipp']:.0f} | {cpu['baseline']:.0f} | {cpu['voxgate']:.0f} "
            f"| {100 * (cpu['voxgate'] / cpu['baseline'] - 1):+.0f} % | {latency} "
            f"| {_pair(steps, 'failed')} | {_pair(steps, 'rejected_503')} | {held} |"
        )
    loads = [r.load_average for r in results]
    lines.append(f"\nload average at step start: {min(loads):.1f}-{max(loads):.1f}")
    return lines


def target_lines(results: list[StepResult], rates: list[int]) -> list[str]:
    """Return VoxGate's medians against the targets: CPU ratio, maximum rate, overload 503s."""
    lines = ["Targets (VoxGate; CPU ratios are medians over rounds, 503 shares per step):"]
    ratios = []
    for rate in rates:
        steps = {
            s: [r for r in results if r.rate == rate and r.server == s and not r.overload]
            for s in SERVERS
        }
        if steps["sipp"] and steps["voxgate"]:
            ours = median([r.cpu_us_per_call for r in steps["voxgate"]])
            reference = median([r.cpu_us_per_call for r in steps["sipp"]])
            ratios.append(f"{rate}/s {ours / reference:.1f}")
    shown = ", ".join(ratios) or "n/a"
    lines.append(f"- CPU per call <= {TARGET_CPU_RATIO:.0f} x SIPp: ratio {shown}")

    best = max_held_by_majority(results, "voxgate", rates)
    lines.append(
        f"- >= {TARGET_RATE} calls/s with p99 < {TARGET_P99_MS:.0f} ms and no failure: "
        f"max {best or 'none'} calls/s"
    )

    overload = [r for r in results if r.server == "voxgate" and r.overload and r.unanswered]
    shares = ", ".join(f"{100 * r.immediate_503_share:.0f} %" for r in overload)
    with_header = sum(r.retry_after_503 for r in overload)
    rejected = sum(r.rejected_503 for r in overload)
    lines.append(
        f"- at {OVERLOAD_FACTOR} x max, >= {100 * TARGET_IMMEDIATE_SHARE:.0f} % of the calls "
        f"without 200 get a 503 within {IMMEDIATE_503_MS:.0f} ms: "
        + (
            f"{shares} per step; {with_header} of {rejected} 503s with Retry-After"
            if overload
            else "no call was rejected"
        )
    )
    # The p99 criterion sets the maximum, so the 1.2 x step may overload nothing.
    # The rate steps that rejected calls show the overload behaviour instead.
    rejecting = [r for r in results if r.server == "voxgate" and not r.overload and r.rejected_503]
    if rejecting:
        shares = ", ".join(
            f"{r.rate}/s {100 * r.immediate_503_share:.0f} %"
            for r in sorted(rejecting, key=lambda r: (r.rate, r.round))
        )
        lines.append(f"  rate steps with 503s, share within {IMMEDIATE_503_MS:.0f} ms: {shares}")
    return lines


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    sipp_version = subprocess.run([SIPP, "-v"], capture_output=True, text=True, check=False)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(pages / 2**30, 1),
        "python": platform.python_version(),
        "sipp": (sipp_version.stdout or sipp_version.stderr).strip().splitlines()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": shlex.join([sys.executable, *sys.argv]),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--rates",
        default="50,100,150,200,300,400,800,1000,1200",
        help="call rates in calls per second, comma-separated",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--step-seconds", type=int, default=5, help="calls per step = rate x this (seconds of load)"
    )
    parser.add_argument("--max-calls", type=int, default=6000, help="upper bound of calls per step")
    parser.add_argument(
        "--step-timeout", type=float, default=20.0, help="SIPp caller stops after this many seconds"
    )
    parser.add_argument(
        "--time-limit", type=float, default=1800.0, help="no step starts after this many seconds"
    )
    parser.add_argument("--log-level", default="INFO", help="VoxGate log level")
    parser.add_argument(
        "--voxgate-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="VoxGate setting over the defaults, e.g. sip.max_calls=50 "
        "(VALUE is read as YAML); repeatable",
    )
    parser.add_argument("--no-overload", action="store_true", help="skip the 1.2 x max step")
    parser.add_argument(
        "--overload-max-calls",
        type=int,
        default=0,
        help="sip.max_calls of VoxGate in the 1.2 x max steps only; 0 sets none",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another VoxGate source tree, run as server 'baseline' in every round",
    )
    parser.add_argument("--json", type=Path, help="write every step result to this file")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="folder for the SIPp and server output; without it, a new /tmp/sip-load-* "
        "folder, which is kept and named at the end",
    )
    parser.add_argument(
        "--summarize",
        type=Path,
        help="print the summary of a --json file from an earlier run and exit",
    )
    return parser.parse_args()  # fmt: skip


def load_results(path: Path) -> tuple[list[StepResult], int]:
    """Read the steps a previous run wrote with --json; returns them and the round count."""
    data = json.loads(path.read_text())
    names = set(StepResult.__dataclass_fields__)
    results = [StepResult(**{k: v for k, v in row.items() if k in names}) for row in data["steps"]]
    return results, max((r.round for r in results), default=0)


def run_rounds(args: argparse.Namespace, rates: list[int]) -> list[StepResult]:
    """Run the interleaved rounds, each followed by its overload steps, within the time limit."""
    deadline = time.monotonic() + float(args.time_limit)
    results: list[StepResult] = []

    def out_of_time() -> bool:
        return time.monotonic() > deadline

    servers = SERVERS if args.baseline is None else ("sipp", "baseline", "voxgate")
    for round_number in range(1, args.rounds + 1):
        if len(servers) == 2:
            order = servers if round_number % 2 else tuple(reversed(servers))
        else:
            shift = (round_number - 1) % len(servers)
            order = servers[shift:] + servers[:shift]
        for rate in rates:
            for server in order:
                if out_of_time():
                    print("time limit reached; stopping", flush=True)
                    return results
                results.append(run_step(server, round_number, rate, args))
                print(describe(results[-1]), flush=True)

        if args.no_overload:
            continue
        for server in order:
            best = max_held(results, server, round_number)
            if best is None or out_of_time():
                continue
            rate = round(best * OVERLOAD_FACTOR)
            results.append(run_step(server, round_number, rate, args, overload=True))
            print(describe(results[-1]) + f"  (overload step, 1.2 x {best})", flush=True)
    return results


def main() -> int:
    args = parse_args()
    args.voxgate_settings = {}
    for item in args.voxgate_set:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            print(f"invalid --voxgate-set {item!r}: expected SECTION.KEY=VALUE", file=sys.stderr)
            return 2
        args.voxgate_settings[key] = yaml.safe_load(value)
    if args.summarize is not None:
        earlier, rounds = load_results(args.summarize)
        print(summarize(earlier, sorted({r.rate for r in earlier if not r.overload}), rounds))
        return 0

    rates = [int(part) for part in args.rates.split(",")]
    if args.workdir is None:
        args.workdir = Path(tempfile.mkdtemp(prefix="sip-load-"))
    args.workdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(json.dumps(info), flush=True)

    started = time.monotonic()
    results = run_rounds(args, rates)
    print()
    print(summarize(results, rates, args.rounds))
    print(f"\nworkdir {args.workdir}; {time.monotonic() - started:.0f} s")

    if args.json is not None:
        rows = [{**asdict(r), "cpu_us_per_call": r.cpu_us_per_call, "held": r.held}
                for r in results]  # fmt: skip
        args.json.write_text(json.dumps({"machine": info, "steps": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
