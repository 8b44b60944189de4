"""Run SIPp (3.6.1, Debian sip-tester) scenarios from tests with bounded waits.

A scenario is an XML template under `tests/data/peers/` with UPPER_CASE
placeholders. `render_scenario` fills them in, `SippProcess` starts SIPp
on free loopback ports and `wait` or `stop` returns a `SippResult` with the
exit code and the error log. SIPp's own exit codes:

    0   every call passed          97  stopped by an internal command
    1   at least one call failed   99  exited without processing a call
    255 fatal error (exit -1)      254 could not bind a socket (exit -2)

`SippProcess` passes `-timeout_error`, so reaching its global timeout is a
fatal error (255, "timed out after" in the error log).

RFC 4733 digits are played with `<exec play_pcap_audio=FILE/>`, which sends
the pcap's UDP payloads from the media port through a raw socket (root
only). `write_dtmf_pcap` builds one pcap per digit with its own RTP
timestamp, so two presses of the same digit are two events. The Debian
files `/usr/share/sip-tester/dtmf_2833_<d>.pcap` all share one timestamp
and SSRC.
"""

from __future__ import annotations

import re
import signal
import struct
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from tests.support.audio_analysis import (
    RtpPacket,
    Samples,
    Timeline,
    audio_from_rtp,
    encode_ulaw,
    packets_from_datagrams,
)
from tests.support.capture import LoopbackCapture
from tests.support.dtmf import check_digits, telephone_event_packets
from tests.support.ports import free_udp_port, free_udp_port_pair
from tests.support.wav import load_mono

SIPP_BINARY = Path("/usr/bin/sipp")
DEBIAN_PCAP_DIR = Path("/usr/share/sip-tester")
SCENARIO_DIR = Path(__file__).resolve().parents[1] / "data" / "peers"
STOP_TIMEOUT_S = 5.0
FRAME_SAMPLES = 160

EXIT_ALL_CALLS_PASSED = 0
EXIT_SOME_CALL_FAILED = 1
EXIT_INTERNAL_COMMAND = 97
EXIT_NO_CALL_PROCESSED = 99
EXIT_FATAL_ERROR = 255
EXIT_BIND_FAILED = 254

PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def debian_dtmf_pcap(digit: str) -> Path:
    """Return Debian's pcap of one RFC 4733 digit (payload type 101)."""
    name = {"*": "star", "#": "pound"}.get(digit, digit)
    path = DEBIAN_PCAP_DIR / f"dtmf_2833_{name}.pcap"
    if not path.is_file():
        raise FileNotFoundError(f"no SIPp DTMF pcap for digit {digit!r} at {path}")
    return path


def write_udp_pcap(path: Path, datagrams: Sequence[tuple[float, bytes]]) -> Path:
    """Write a pcap (Ethernet, IPv4, UDP) of `(offset_s, payload)` datagrams for play_pcap_audio.

    SIPp rewrites the addresses and ports when it plays the file and keeps
    the offsets between packets, so the addresses here are placeholders.
    """
    records = []
    for index, (offset_s, payload) in enumerate(datagrams):
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(payload), 0) + payload
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), index & 0xFFFF, 0, 64, 17, 0,
            bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]),
        )  # fmt: skip
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        microseconds = round(offset_s * 1_000_000)
        seconds, fraction = divmod(microseconds, 1_000_000)
        records.append(struct.pack("<IIII", seconds, fraction, len(frame), len(frame)) + frame)
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    path.write_bytes(header + b"".join(records))
    return path


def write_dtmf_pcap(
    path: Path,
    digit: str,
    *,
    rtp_timestamp: int,
    first_sequence: int = 1,
    ssrc: int = 0x5EED0001,
    payload_type: int = 101,
    duration_s: float = 0.1,
) -> Path:
    """Write a pcap of the RFC 4733 packets of one digit, 20 ms apart (end packets too)."""
    datagrams = []
    for index, packet in enumerate(telephone_event_packets(digit, duration_s=duration_s)):
        header = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if packet.marker else 0) | payload_type,
            (first_sequence + index) & 0xFFFF,
            rtp_timestamp & 0xFFFFFFFF,
            ssrc,
        )
        datagrams.append((index * 0.02, header + packet.payload))
    return write_udp_pcap(path, datagrams)


def write_audio_pcap(
    path: Path, samples: Samples, *, ssrc: int = 0x5EED0002, first_timestamp: int = 0
) -> Path:
    """Write a pcap of 8 kHz samples as PCMU (payload type 0) RTP, 20 ms per packet.

    The last partial frame is padded with silence.
    """
    frames = -(-len(samples) // FRAME_SAMPLES)
    padded = np.zeros(frames * FRAME_SAMPLES, dtype=np.int16)
    padded[: len(samples)] = samples
    datagrams = []
    for index in range(frames):
        header = struct.pack(
            "!BBHII",
            0x80,
            0x80 if index == 0 else 0,
            (1 + index) & 0xFFFF,
            (first_timestamp + index * FRAME_SAMPLES) & 0xFFFFFFFF,
            ssrc,
        )
        frame = padded[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES]
        datagrams.append((index * 0.02, header + encode_ulaw(frame)))
    return write_udp_pcap(path, datagrams)


def render_scenario(template: Path, destination: Path, values: Mapping[str, object]) -> Path:
    """Fill the UPPER_CASE placeholders of `template` and write the result to `destination`.

    Raises ValueError when a value has no placeholder in the template or a
    placeholder of the template has no value.
    """
    text = template.read_text(encoding="utf-8")
    expected = set(PLACEHOLDER.findall(text))
    missing = expected - set(values)
    unknown = set(values) - expected
    if missing or unknown:
        raise ValueError(
            f"{template.name}: placeholders without a value {sorted(missing)}, "
            f"values without a placeholder {sorted(unknown)}"
        )
    rendered = PLACEHOLDER.sub(lambda m: str(values.get(m.group(0), m.group(0))), text)
    destination.write_text(rendered, encoding="utf-8")
    return destination


def dtmf_actions(work_dir: Path, digits: str, *, gap_ms: int = 400, duration_s: float = 0.1) -> str:
    """Return scenario XML that plays `digits` as RFC 4733 events, `gap_ms` apart.

    Each digit gets its own pcap in `work_dir` with an RTP timestamp 8000
    units (1 s) after the previous digit's.
    """
    steps = []
    for index, digit in enumerate(check_digits(digits)):
        pcap = write_dtmf_pcap(
            work_dir / f"dtmf_{index}.pcap",
            digit,
            rtp_timestamp=160_000 + 8000 * index,
            first_sequence=1 + 10 * index,
            duration_s=duration_s,
        )
        if index:
            steps.append(f'<pause milliseconds="{gap_ms}"/>')
        steps.append(f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>')
    return "\n  ".join(steps)


def audio_actions(work_dir: Path, wav: Path) -> str:
    """Return scenario XML that starts playing `wav` as PCMU RTP (it plays on in the background).

    SIPp stops this audio when the next pcap (a digit) starts playing.
    """
    pcap = write_audio_pcap(work_dir / f"{wav.stem}.pcap", load_mono(wav, 8000))
    return f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>'


@dataclass(frozen=True, slots=True)
class SippResult:
    """How a SIPp run ended: exit code, whether the wait timed out, and its logs."""

    returncode: int
    timed_out: bool
    error_log: str
    message_log: str
    screen: str
    command: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.returncode == EXIT_ALL_CALLS_PASSED and not self.timed_out

    def describe(self) -> str:
        """Return a report for assertion messages: exit code, errors and the SIP trace."""
        return (
            f"sipp exit code {self.returncode} (timed out: {self.timed_out})\n"
            f"command: {' '.join(self.command)}\n"
            f"--- errors ---\n{self.error_log[-4000:]}\n"
            f"--- messages ---\n{self.message_log[-6000:]}\n"
            f"--- screen ---\n{self.screen[-3000:]}"
        )


class SippProcess:
    """One SIPp process on 127.0.0.1, stopped by its PID.

    With `remote` set SIPp is a UAC that calls `sip:<service>@<remote>`;
    without it SIPp waits for calls. `sip_port` and `media_port` default to
    free ports. `calls` maps to `-m` (None runs until stopped), and
    `global_timeout_s` to `-timeout`, which makes SIPp exit by itself.
    With `capture_rtp`, the datagrams sent to the media port are captured
    on `lo` (root only) for `received_audio()`.
    """

    def __init__(
        self,
        scenario: Path,
        work_dir: Path,
        *,
        remote: tuple[str, int] | None = None,
        service: str = "ivr",
        sip_port: int | None = None,
        media_port: int | None = None,
        calls: int | None = 1,
        rtp_echo: bool = False,
        global_timeout_s: float = 60.0,
        capture_rtp: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.scenario = scenario
        self.capture_rtp = capture_rtp
        self._capture: LoopbackCapture | None = None
        self.work_dir = work_dir
        self.sip_port = sip_port or free_udp_port()
        # With -rtp_echo SIPp also binds media_port + 2 (video), so pick a free block.
        self.media_port = media_port or free_udp_port_pair()
        self.error_path = work_dir / f"{scenario.stem}_errors.log"
        self.message_path = work_dir / f"{scenario.stem}_messages.log"
        self.screen_path = work_dir / f"{scenario.stem}_screen.log"
        self.stdout_path = work_dir / f"{scenario.stem}_stdout.log"
        command = [
            str(SIPP_BINARY),
            *([f"{remote[0]}:{remote[1]}"] if remote else []),
            "-sf", str(scenario),
            "-i", "127.0.0.1", "-mi", "127.0.0.1",
            "-p", str(self.sip_port), "-mp", str(self.media_port),
            "-s", service,
            "-timeout", f"{global_timeout_s:g}s", "-timeout_error",
            "-trace_err", "-error_file", str(self.error_path),
            "-trace_msg", "-message_file", str(self.message_path),
            "-trace_screen", "-screen_file", str(self.screen_path),
            "-nostdin",
        ]  # fmt: skip
        if calls is not None:
            command += ["-m", str(calls)]
        if rtp_echo:
            command.append("-rtp_echo")
        command += list(extra_args)
        self.command = tuple(command)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> SippProcess:
        if self.capture_rtp:
            self._capture = LoopbackCapture(self.media_port).__enter__()
        with self.stdout_path.open("wb") as stdout:
            self._process = subprocess.Popen(
                self.command,
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_until_listening(self, timeout_s: float = 10.0) -> None:
        """Wait until SIPp's SIP socket is bound, so a peer's first request is not lost."""
        deadline = time.monotonic() + timeout_s
        needle = f"{self.sip_port:04X}"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"sipp exited early:\n{self.result(False).describe()}")
            with open("/proc/net/udp", encoding="ascii") as table:
                if any(f"0100007F:{needle}" in line for line in table):
                    return
            time.sleep(0.05)
        raise TimeoutError(f"sipp did not bind 127.0.0.1:{self.sip_port} within {timeout_s} s")

    def wait(self, timeout_s: float) -> SippResult:
        """Wait up to `timeout_s` for SIPp to exit; stop it and mark the result timed out if not."""
        process = self._require_process()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._terminate()
            return self.result(True)
        return self.result(False)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> SippResult:
        """Quit SIPp like pressing q (SIGUSR1), then end it by PID after `timeout_s`.

        SIGUSR1 lets calls in progress finish. A call that SIPp aborted can
        keep it running even after a second SIGUSR1, hence the SIGTERM.
        """
        process = self._require_process()
        if process.poll() is None:
            process.send_signal(signal.SIGUSR1)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._terminate()
        return self.result(False)

    def received_packets(self) -> list[RtpPacket]:
        """Return the RTP packets captured on their way to SIPp's media port."""
        if self._capture is None:
            raise RuntimeError("RTP capture is off: create the SippProcess with capture_rtp=True")
        return packets_from_datagrams(self._capture.snapshot())

    def received_audio(self) -> Timeline:
        """Return the G.711 audio sent to SIPp's media port, laid out by RTP timestamp."""
        return audio_from_rtp(self.received_packets())

    def result(self, timed_out: bool) -> SippResult:
        process = self._require_process()
        if self._capture is not None and process.returncode is not None:
            self._capture.stop()
        returncode = process.returncode if process.returncode is not None else -1
        return SippResult(
            returncode=returncode % 256,
            timed_out=timed_out,
            error_log=_read(self.error_path),
            message_log=_read(self.message_path),
            screen=_read(self.screen_path) or _read(self.stdout_path),
            command=self.command,
        )

    def __enter__(self) -> SippProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.poll() is None:
            self._terminate()
        if self._capture is not None:
            self._capture.stop()

    def _terminate(self) -> None:
        process = self._require_process()
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("SippProcess.start() was not called")
        return self._process


def run_sipp(
    scenario: Path, work_dir: Path, *, timeout_s: float = 30.0, **options: object
) -> SippResult:
    """Run SIPp until it exits or `timeout_s` passes; options are those of SippProcess."""
    process = SippProcess(scenario, work_dir, **options)  # type: ignore[arg-type]
    with process:
        return process.wait(timeout_s)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
