"""Drive baresip 1.0.0 (Debian baresip-core) as a scripted SIP caller.

Each `BaresipClient` runs one headless baresip process with a generated
config directory:

- `-n 127.0.0.1` binds it to loopback (`-n lo` fails in 1.0.0: "could not
  get IPv4 address"). SIP listens on UDP and TCP at a free port and on TLS
  one port above, and `rtp_ports` pins RTP to one free even port so the
  RTP it receives can be captured on `lo`.
- The `ctrl_tcp` module takes JSON commands in netstrings (`dial`,
  `sndcode`, `hangup`, as the `menu` module names them) and reports events
  (`CALL_ESTABLISHED`, `CALL_CLOSED` with a reason, `CALL_DTMF_START`).
- The microphone is `audio_source aufile,FILE` with an 8 kHz mono WAV,
  padded with silence to `max_call_s`. The padding matters twice: baresip
  1.0.0 sends RFC 4733 events from the audio source's read handler, so no
  source means no DTMF, and when aufile reaches the end of the file it
  ends the call itself (CALL_CLOSED reason "end of file").
- The `sndfile` filter writes what the decoder produced (`*-dec.wav`) and
  what the encoder got (`*-enc.wav`) to `snd_path`. The decoder dump has
  no gaps for missing packets, so for timing use `received_audio()`,
  which rebuilds the timeline from the captured RTP.

`sndcode D` sends one digit as RFC 4733 telephone-events (payload type
from the answer's telephone-event rtpmap; nothing is sent if the answer
has none): a start packet, updates every 20 ms for about 180 ms and three
end packets.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from tests.support.audio_analysis import (
    RtpPacket,
    Timeline,
    audio_from_rtp,
    packets_from_datagrams,
)
from tests.support.calls import CallEnd, CallEndedBy
from tests.support.capture import LoopbackCapture
from tests.support.dtmf import check_digits
from tests.support.ports import free_port_block, free_tcp_port, free_udp_port_pair
from tests.support.wav import load_mono, silence, write_wav

__all__ = [
    "BaresipClient",
    "BaresipError",
    "BaresipEvent",
    "CallEnd",
    "CallEndedBy",
    "decode_netstrings",
    "encode_netstring",
]

BARESIP_BINARY = Path("/usr/bin/baresip")
MODULE_PATH = Path("/usr/lib/baresip/modules")
SAMPLE_RATE = 8000
STOP_TIMEOUT_S = 5.0
MAX_NETSTRING = 1 << 20
# Lines of baresip's console output that a timeout error carries.
LOG_TAIL_LINES = 40

# Reasons baresip 1.0.0 puts in CALL_CLOSED: "%m" of ECONNRESET when the
# peer sent BYE, and ua_hangup's default when we hung up.
REMOTE_BYE_REASON = "Connection reset by peer"
LOCAL_HANGUP_REASON = "Connection reset by user"

logger = logging.getLogger("tests.peers.baresip")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BaresipEvent:
    """One ctrl_tcp event, with the monotonic time it was read."""

    type: str
    param: str
    call_id: str
    at: float
    fields: dict[str, Any] = field(default_factory=dict)


class BaresipError(RuntimeError):
    """baresip failed to start, rejected a command or did not report in time."""


def encode_netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode("ascii") + b":" + payload + b","


def decode_netstrings(buffer: bytearray) -> list[bytes]:
    """Remove the complete netstrings at the front of `buffer` and return their payloads."""
    payloads: list[bytes] = []
    while True:
        colon = buffer.find(b":")
        if colon < 0:
            if len(buffer) > 20:
                raise ValueError("netstring length prefix is missing its colon")
            return payloads
        length = int(buffer[:colon])
        if length > MAX_NETSTRING:
            raise ValueError(f"netstring of {length} bytes exceeds {MAX_NETSTRING}")
        end = colon + 1 + length
        if len(buffer) <= end:
            return payloads
        if buffer[end : end + 1] != b",":
            raise ValueError("netstring does not end with a comma")
        payloads.append(bytes(buffer[colon + 1 : end]))
        del buffer[: end + 1]


class BaresipClient:
    """A baresip process that places one call at a time, scripted from a test.

    Typical use::

        with BaresipClient(tmp_path, microphone=wav) as phone:
            phone.dial(f"sip:ivr@127.0.0.1:{port}")
            phone.wait_established(10)
            phone.send_digits("1", after_answer_s=2.0)
            end = phone.wait_closed(30)
            audio = phone.received_audio()
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        user: str = "caller",
        microphone: Path | None = None,
        max_call_s: float = 60.0,
        capture_rtp: bool = True,
        max_calls: int = 1,
    ) -> None:
        self.work_dir = work_dir / f"baresip-{user}"
        self.user = user
        self.microphone = microphone
        self.max_call_s = max_call_s
        self.capture_rtp = capture_rtp
        # A transferee needs two calls at once: baresip places the call to the
        # REFER target while the first call is still up.
        if not 1 <= max_calls <= 2:
            raise ValueError(f"max_calls must be 1 or 2, got {max_calls}")
        self.max_calls = max_calls
        # baresip 1.0.0 listens on UDP and TCP at sip_listen and TLS one port above.
        self.sip_port = free_port_block(udp_offsets=(0,), tcp_offsets=(0, 1))
        self.rtp_port = free_udp_port_pair()
        self.control_port = free_tcp_port()
        self.config_dir = self.work_dir / "config"
        self.recording_dir = self.work_dir / "recordings"
        self.log_path = self.work_dir / "baresip.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._capture: LoopbackCapture | None = None
        self._condition = threading.Condition()
        self._events: list[BaresipEvent] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._reader_error: BaseException | None = None
        self._token = 0
        self._hangup_requested = False

    # Process lifecycle

    def start(self, timeout_s: float = 10.0) -> BaresipClient:
        """Write the config, start baresip and connect to its ctrl_tcp port."""
        self._write_config()
        if self.capture_rtp:
            self._capture = LoopbackCapture(self.rtp_port).__enter__()
        command = [str(BARESIP_BINARY), "-f", str(self.config_dir), "-n", "127.0.0.1"]
        with self.log_path.open("wb") as log_file:
            self._process = subprocess.Popen(
                command,
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self._control = self._connect(timeout_s)
        self._reader = threading.Thread(
            target=self._read_control, name=f"baresip-{self.user}", daemon=True
        )
        self._reader.start()
        return self

    def stop(self) -> None:
        """Stop baresip by PID (SIGTERM, then SIGKILL) and the RTP capture."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=STOP_TIMEOUT_S)
        if self._control is not None:
            self._control.close()
        if self._reader is not None:
            self._reader.join(timeout=STOP_TIMEOUT_S)
        if self._capture is not None:
            self._capture.stop()

    def __enter__(self) -> BaresipClient:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def log(self) -> str:
        """Return baresip's console output without the per-second status line updates."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        lines = [part for part in text.replace("\r", "\n").split("\n") if "audio=" not in part]
        return "\n".join(lines)

    # Call control

    def dial(self, uri: str, timeout_s: float = 10.0) -> None:
        """Place a call to `uri` (for example `sip:ivr@127.0.0.1:5060`).

        The wait methods then look only at events after this dial, so one
        client can place several calls in a row. The reply to the command
        once took more than 5 s in a full test run on an idle 2-vCPU machine,
        so `timeout_s` defaults to the 10 s that the tests give the answer.
        """
        with self._condition:
            self._hangup_requested = False
            self._call_first_event = len(self._events)
        self.command("dial", uri, timeout_s=timeout_s)

    def hangup(self, timeout_s: float = 5.0) -> None:
        self._hangup_requested = True
        self.command("hangup", timeout_s=timeout_s)

    def send_digits(
        self,
        digits: str,
        *,
        after_answer_s: float | None = None,
        gap_s: float = 0.3,
        timeout_s: float = 10.0,
    ) -> list[float]:
        """Send `digits` as RFC 4733 events, one `sndcode` command per digit.

        With `after_answer_s`, the first digit goes that many seconds after
        CALL_ESTABLISHED (at once if that moment has passed). Digits are
        `gap_s` apart, because one digit's events last about 180 ms. Returns
        the monotonic time each digit was sent; raises BaresipError when the
        call closes first.
        """
        digits = check_digits(digits)
        if after_answer_s is not None:
            established = self.wait_established(timeout_s)
            self._wait_for_call_until(established + after_answer_s)
        sent = []
        for index, digit in enumerate(digits):
            if index:
                self._wait_for_call_until(time.monotonic() + gap_s)
            self.command("sndcode", digit, timeout_s=timeout_s)
            sent.append(time.monotonic())
        return sent

    def command(self, name: str, params: str | None = None, *, timeout_s: float = 5.0) -> str:
        """Run a baresip long command over ctrl_tcp and return its output; raise if it failed."""
        control = self._require_control()
        with self._condition:
            self._token += 1
            token = f"t{self._token}"
        message: dict[str, str] = {"command": name, "token": token}
        if params is not None:
            message["params"] = params
        control.sendall(encode_netstring(json.dumps(message).encode("utf-8")))
        response = self._wait_for(lambda: self._responses.pop(token, None), timeout_s, name)
        if not response.get("ok"):
            raise BaresipError(f"baresip command {name!r} failed: {response.get('data')!r}")
        return str(response.get("data", ""))

    # Events

    def events(self) -> list[BaresipEvent]:
        with self._condition:
            return list(self._events)

    def wait_event(self, event_type: str, timeout_s: float) -> BaresipEvent:
        """Wait for the first event of `event_type` (already received ones count)."""
        return self._wait_for(lambda: self._find(event_type), timeout_s, event_type)

    def wait_established(self, timeout_s: float = 10.0) -> float:
        """Wait for CALL_ESTABLISHED and return its monotonic time.

        Raises BaresipError if the call closes first, for example rejected.
        """

        def established() -> float | None:
            event = self._find("CALL_ESTABLISHED")
            if event is not None:
                return event.at
            closed = self._find("CALL_CLOSED")
            if closed is not None:
                raise BaresipError(f"call closed before it was established: {closed.param!r}")
            return None

        return self._wait_for(established, timeout_s, "CALL_ESTABLISHED")

    def wait_closed(self, timeout_s: float = 30.0) -> CallEnd:
        """Wait for CALL_CLOSED and return which side ended the call, and why."""
        closed = self.wait_event("CALL_CLOSED", timeout_s)
        if self._find("CALL_ESTABLISHED") is None:
            ended_by = CallEndedBy.FAILED
        elif closed.param == REMOTE_BYE_REASON and not self._hangup_requested:
            ended_by = CallEndedBy.REMOTE
        else:
            ended_by = CallEndedBy.LOCAL
        return CallEnd(ended_by, closed.param, closed.at)

    def received_digits(self) -> str:
        """Return the digits of the current call that baresip received as RFC 4733 events."""
        with self._condition:
            events = self._events[self._call_first_event :]
        return "".join(e.param for e in events if e.type == "CALL_DTMF_START")

    # Audio

    def received_packets(self) -> list[RtpPacket]:
        """Return the RTP packets captured on their way to baresip's RTP port."""
        if self._capture is None:
            raise BaresipError("RTP capture is off: create the client with capture_rtp=True")
        return packets_from_datagrams(self._capture.received())

    def sent_packets(self) -> list[RtpPacket]:
        """Return the RTP packets captured on their way from baresip's RTP port."""
        if self._capture is None:
            raise BaresipError("RTP capture is off: create the client with capture_rtp=True")
        return packets_from_datagrams(self._capture.sent())

    def received_audio(self) -> Timeline:
        """Return the G.711 audio sent to baresip, laid out by RTP timestamp."""
        return audio_from_rtp(self.received_packets())

    def received_wav(self) -> Path:
        """Return the WAV that the sndfile filter wrote from baresip's decoder output.

        NOTE: sndfile names its files by the second the call started, so a
        second call from this client within the same second overwrites them.
        """
        return self._recording("dec")

    def sent_wav(self) -> Path:
        """Return the WAV that the sndfile filter wrote from the encoder input (the microphone)."""
        return self._recording("enc")

    # Internals

    def _write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.recording_dir.mkdir(parents=True, exist_ok=True)
        microphone = self.work_dir / "microphone.wav"
        total = round(self.max_call_s * SAMPLE_RATE)
        samples = silence(self.max_call_s, SAMPLE_RATE)
        if self.microphone is not None:
            spoken = load_mono(self.microphone, SAMPLE_RATE)[:total]
            samples[: len(spoken)] = spoken
        write_wav(microphone, samples, SAMPLE_RATE)

        settings = {
            "poll_method": "epoll",
            "sip_listen": f"127.0.0.1:{self.sip_port}",
            "call_local_timeout": "30",
            "call_max_calls": str(self.max_calls),
            "audio_source": f"aufile,{microphone}",
            "audio_level": "no",
            # free_udp_port_pair checked that rtp_port to rtp_port + 3 were free: two calls.
            "rtp_ports": f"{self.rtp_port}-{self.rtp_port + 2 * self.max_calls - 1}",
            "rtcp_mux": "no",
            "jitter_buffer_delay": "1-5",
            "module_path": str(MODULE_PATH),
            "ctrl_tcp_listen": f"127.0.0.1:{self.control_port}",
            "snd_path": str(self.recording_dir),
        }
        modules = [
            ("module", "g711.so"),
            ("module", "aufile.so"),
            ("module", "sndfile.so"),
            ("module_tmp", "account.so"),
            ("module_app", "menu.so"),
            ("module_app", "ctrl_tcp.so"),
        ]
        lines = [f"{key}\t{value}" for key, value in settings.items()]
        lines += [f"{key}\t{value}" for key, value in modules]
        (self.config_dir / "config").write_text("\n".join(lines) + "\n", encoding="utf-8")

        # regint=0: no REGISTER, the account only places calls.
        account = f"<sip:{self.user}@127.0.0.1>;regint=0;audio_codecs=PCMU,PCMA\n"
        (self.config_dir / "accounts").write_text(account, encoding="utf-8")

    def _connect(self, timeout_s: float) -> socket.socket:
        deadline = time.monotonic() + timeout_s
        process = self._require_process()
        while True:
            if process.poll() is not None:
                raise BaresipError(f"baresip exited with {process.returncode}:\n{self.log()}")
            try:
                return socket.create_connection(("127.0.0.1", self.control_port), timeout=1.0)
            except OSError:
                if time.monotonic() > deadline:
                    raise BaresipError(
                        f"baresip ctrl_tcp not reachable within {timeout_s} s:\n{self.log()}"
                    ) from None
                time.sleep(0.05)

    def _read_control(self) -> None:
        control = self._require_control()
        control.settimeout(None)
        buffer = bytearray()
        try:
            while True:
                chunk = control.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                for payload in decode_netstrings(buffer):
                    self._dispatch(json.loads(payload))
        except OSError:
            return
        except ValueError as exc:
            logger.error("invalid ctrl_tcp message from baresip: %s", exc)
            with self._condition:
                self._reader_error = exc
                self._condition.notify_all()

    def _dispatch(self, message: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._condition:
            if message.get("response"):
                self._responses[str(message.get("token"))] = message
            elif message.get("event"):
                event = BaresipEvent(
                    type=str(message.get("type", "")),
                    param=str(message.get("param", "")),
                    call_id=str(message.get("id", "")),
                    at=now,
                    fields=message,
                )
                logger.debug("baresip event %s for call %s", event.type, event.call_id)
                self._events.append(event)
            self._condition.notify_all()

    def _find(self, event_type: str) -> BaresipEvent | None:
        events = self._events[self._call_first_event :]
        return next((e for e in events if e.type == event_type), None)

    def _wait_for(self, probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
        """Wait until `probe()` (called under the lock) returns something other than None."""
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while True:
                if self._reader_error is not None:
                    raise BaresipError(f"ctrl_tcp reader failed: {self._reader_error}")
                result = probe()
                if result is not None:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    tail = "\n".join(self.log().splitlines()[-LOG_TAIL_LINES:])
                    raise BaresipError(
                        f"timed out after {timeout_s} s waiting for {what}; baresip log:\n{tail}"
                    )
                self._condition.wait(remaining)

    def _wait_for_call_until(self, moment: float) -> None:
        """Wait until the monotonic `moment`; raise BaresipError if the call closes first."""
        with self._condition:
            while (remaining := moment - time.monotonic()) > 0:
                if self._find("CALL_CLOSED") is not None:
                    raise BaresipError("call closed before the digits were sent")
                self._condition.wait(remaining)

    def _recording(self, kind: str) -> Path:
        files = sorted(self.recording_dir.glob(f"dump-*-{kind}.wav"))
        if not files:
            raise BaresipError(f"no sndfile recording *-{kind}.wav in {self.recording_dir}")
        return files[-1]

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise BaresipError("BaresipClient.start() was not called")
        return self._process

    def _require_control(self) -> socket.socket:
        if self._control is None:
            raise BaresipError("BaresipClient.start() was not called")
        return self._control
