"""Drive pyVoIP 1.6.8 as a scripted SIP caller in tests.

pyVoIP is thread-based and UDP only. `VoIPPhone.start()` registers with the
server, `call(user)` sends an INVITE offering PCMU (0) and telephone-event
(101) to `sip:<user>@<server host>` (no port in the Request-URI) and
returns a `VoIPCall`. The library has no events, so `PyVoipClient` uses
small subclasses to observe it:

- `_ObservedPhone` marks the call established when pyVoIP handles the 200
  to the INVITE, and ended when a BYE arrives or a 404 or 503 ends the
  INVITE. pyVoIP drops every other final response (486, 603, ...) without an ACK,
  so a rejected call only shows as a `wait_established` timeout.
- pyVoIP starts its SIP receive thread 1 s after `start()` and binds a
  call's RTP socket only when that thread handles the 200, so it missed
  up to the first second of a prompt. `PyVoipClient.start()` runs the
  receive loop at once instead.
- `_RecordingRtpClient` keeps every RTP datagram pyVoIP receives (with its
  arrival time) for `received_audio()`. It keeps pyVoIP's receive thread
  alive when its parser raises (a telephone-event above 15 raised
  IndexError and ended that thread). Its transmit loop is pyVoIP's plus
  RFC 4733 event packets, so events share the audio stream's SSRC,
  sequence numbers and clock.

Other pyVoIP 1.6.8 behaviour a server sees from this client: `call()`
blocks until a 100, 180 or 401 arrives (a 200 without a provisional
response first makes it wait forever). It ACKs every retransmitted 200,
and each ACK carries a new random To tag instead of the server's. Its BYE
reuses the INVITE's Via branch, and it sends no response to OPTIONS. A
Call-ID is the hash of a per-phone counter plus `@ip:port`, so two phones
that send the same requests use the same Call-IDs apart from that suffix.
Its PCMA encoder produces mu-law, which only matters if an answer picks
PCMA (pyVoIP offers PCMU only). A 200 that pyVoIP reads before `call()`
has stored the call is kept and replayed here, where pyVoIP alone would
wait for the server's retransmission.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import socket
import struct
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from tests.support.audio_analysis import (
    RtpPacket,
    Samples,
    Timeline,
    audio_from_rtp,
    parse_rtp,
)
from tests.support.calls import CallEnd, CallEndedBy
from tests.support.dtmf import EventPacket, check_digits, dtmf_tone, telephone_event_packets
from tests.support.ports import free_udp_port, free_udp_port_pair
from tests.support.wav import load_mono

with warnings.catch_warnings():
    # pyVoIP imports audioop, which warns on Python 3.11 and is gone in 3.13.
    warnings.simplefilter("ignore", DeprecationWarning)
    # Importing pyVoIP.SIP before pyVoIP.VoIP fails with a circular import.
    import pyVoIP.VoIP  # noqa: F401
    from pyVoIP import RTP, SIP
    from pyVoIP.VoIP import CallState, PhoneStatus, VoIPCall, VoIPPhone

__all__ = ["CallEnd", "CallEndedBy", "PyVoipClient", "PyVoipError", "to_pyvoip_audio"]

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160
STOP_TIMEOUT_S = 10.0

logger = logging.getLogger("tests.peers.pyvoip")

T = TypeVar("T")


class PyVoipError(RuntimeError):
    """pyVoIP failed to register or call, or did not report in time."""


def _is_method_of(function: object, owner: object) -> bool:
    return getattr(function, "__self__", None) is owner


def to_pyvoip_audio(samples: Samples) -> bytes:
    """Convert 16-bit samples to the 8-bit unsigned linear audio that pyVoIP reads and writes."""
    return ((samples.astype(np.int16) >> 8) + 128).astype(np.uint8).tobytes()


class _Recorder:
    """What the pyVoIP threads report: RTP received, parse errors, call milestones."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.datagrams: list[tuple[bytes, float]] = []
        self.rtp_errors: list[str] = []
        self.established_at: float | None = None
        self.end: CallEnd | None = None

    def mark_end(self, ended_by: CallEndedBy, reason: str) -> None:
        with self.condition:
            if self.end is None:
                self.end = CallEnd(ended_by, reason, time.monotonic())
            self.condition.notify_all()


class _RecordingRtpClient(RTP.RTPClient):
    """pyVoIP's RTP client plus a record of received packets and RFC 4733 sending."""

    def __init__(self, *args: Any, recorder: _Recorder, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorder = recorder
        self.event_lock = threading.Lock()
        # Per 20 ms tick: an event packet to send in place of audio, or None
        # for a tick of audio between digits.
        self.event_ticks: collections.deque[EventPacket | None] = collections.deque()

    def parse_packet(self, packet: bytes) -> None:
        with self.recorder.condition:
            self.recorder.datagrams.append((packet, time.monotonic()))
        try:
            super().parse_packet(packet)
        except RTP.RTPParseError:
            raise
        except Exception as exc:
            with self.recorder.condition:
                self.recorder.rtp_errors.append(repr(exc))

    def event_payload_type(self) -> int:
        for payload_type, codec in self.assoc.items():
            if codec == RTP.PayloadType.EVENT:
                return int(payload_type)
        raise PyVoipError("the SDP answer has no telephone-event payload type")

    def queue_digit(self, digit: str, duration_s: float, gap_s: float) -> None:
        """Queue one digit's event packets, then `gap_s` of audio before the next digit."""
        with self.event_lock:
            self.event_ticks.extend(telephone_event_packets(digit, duration_s=duration_s))
            self.event_ticks.extend([None] * round(gap_s / 0.02))

    def trans(self) -> None:
        """Send one packet per 20 ms like pyVoIP's loop, with queued events in place of audio.

        All packets of one event carry the RTP timestamp of its first
        packet (RFC 4733 section 2.5.1.1); the audio clock keeps running.
        """
        event_timestamp = 0
        while self.NSD:
            started = time.monotonic_ns()
            audio = self.pmout.read()
            with self.event_lock:
                packet = self.event_ticks.popleft() if self.event_ticks else None
            if packet is not None:
                if packet.marker:
                    event_timestamp = self.outTimestamp
                payload_type = self.event_payload_type()
                marker, timestamp, payload = packet.marker, event_timestamp, packet.payload
            else:
                payload_type = int(self.preference)
                marker, timestamp, payload = False, self.outTimestamp, self.encode_packet(audio)
            header = struct.pack(
                "!BBHII",
                0x80,
                (0x80 if marker else 0) | payload_type,
                self.outSequence & 0xFFFF,
                timestamp & 0xFFFFFFFF,
                self.outSSRC,
            )
            try:
                self.sout.sendto(header + payload, (self.outIP, self.outPort))
            except OSError:
                if not self.NSD:
                    return
                logger.warning("pyVoIP RTP send to %s:%s failed", self.outIP, self.outPort)
            self.outSequence = (self.outSequence + 1) & 0xFFFF
            self.outTimestamp = (self.outTimestamp + len(audio)) & 0xFFFFFFFF
            period_s = FRAME_SAMPLES / self.preference.rate
            time.sleep(max(0.0, period_s - (time.monotonic_ns() - started) / 1e9))


class _ObservedCall(VoIPCall):
    def create_rtp_clients(
        self,
        codecs: dict[int, Any],
        ip: str,
        port: int,
        request: Any,
        baseport: int,
    ) -> None:
        for index in range(len(request.body["c"])):
            client = _RecordingRtpClient(
                codecs,
                ip,
                port,
                request.body["c"][index]["address"],
                baseport + index,
                self.sendmode,
                dtmf=self.dtmf_callback,
                recorder=cast(_ObservedPhone, self.phone).recorder,
            )
            self.RTPClients.append(client)


class _ObservedPhone(VoIPPhone):
    """A VoIPPhone that reports call milestones to a `_Recorder`."""

    def __init__(self, *args: Any, recorder: _Recorder, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorder = recorder
        self.early_responses: dict[str, Any] = {}
        self.calls_lock = threading.Lock()

    def call(self, number: str) -> VoIPCall:
        """Send the INVITE like VoIPPhone.call, but with the observing call class."""
        port = self.request_port()
        medias: Any = {port: {0: RTP.PayloadType.PCMU, 101: RTP.PayloadType.EVENT}}
        request, call_id, session_id = self.sip.invite(number, medias, RTP.TransmitType.SENDRECV)
        with self.calls_lock:
            self.calls[call_id] = _ObservedCall(
                self,
                CallState.DIALING,
                request,
                session_id,
                self.myIP,
                ms=medias,
                sendmode=self.sendmode,
            )
            early = self.early_responses.pop(call_id, None)
        if early is not None:
            self._callback_RESP_OK(early)
        return self.calls[call_id]

    def _callback_RESP_OK(self, request: SIP.SIPMessage) -> None:
        call_id = request.headers["Call-ID"]
        with self.calls_lock:
            known = call_id in self.calls
            if not known and request.headers["CSeq"]["method"] == "INVITE":
                self.early_responses[call_id] = request
        if not known:
            return
        super()._callback_RESP_OK(request)
        call = self.calls.get(call_id)
        if call is not None and call.state == CallState.ANSWERED:
            with self.recorder.condition:
                if self.recorder.established_at is None:
                    self.recorder.established_at = time.monotonic()
                self.recorder.condition.notify_all()

    def _callback_MSG_Bye(self, request: SIP.SIPMessage) -> None:
        super()._callback_MSG_Bye(request)
        self.recorder.mark_end(CallEndedBy.REMOTE, "BYE received")

    def _callback_RESP_NotFound(self, request: SIP.SIPMessage) -> None:
        super()._callback_RESP_NotFound(request)
        self.recorder.mark_end(CallEndedBy.FAILED, "404 Not Found")

    def _callback_RESP_Unavailable(self, request: SIP.SIPMessage) -> None:
        super()._callback_RESP_Unavailable(request)
        self.recorder.mark_end(CallEndedBy.FAILED, "503 Service Unavailable")


class PyVoipClient:
    """A pyVoIP phone on 127.0.0.1 that registers with a server and calls through it.

    Typical use::

        with PyVoipClient(server_port=5060) as phone:
            phone.dial("ivr")
            phone.wait_established(10)
            phone.send_digits_inband("1", after_answer_s=2.0)
            end = phone.wait_closed(30)
            audio = phone.received_audio()
    """

    def __init__(
        self,
        server_port: int,
        *,
        server_host: str = "127.0.0.1",
        user: str = "pyvoip",
        password: str = "",
        register: bool = True,
        register_timeout_s: float = 10.0,
    ) -> None:
        self.server = (server_host, server_port)
        self.register = register
        self.user = user
        self.sip_port = free_udp_port()
        self.rtp_port = free_udp_port_pair()
        self._recorder = _Recorder()
        self._phone = _ObservedPhone(
            server_host,
            server_port,
            user,
            password,
            myIP="127.0.0.1",
            sipPort=self.sip_port,
            rtpPortLow=self.rtp_port,
            rtpPortHigh=self.rtp_port,
            recorder=self._recorder,
        )
        self._phone.sip.register_timeout = math.ceil(register_timeout_s)
        self._call: VoIPCall | None = None
        self._digits = ""
        self._receiver: threading.Thread | None = None

    # Lifecycle

    def start(self) -> PyVoipClient:
        """Open pyVoIP's SIP socket and, with `register`, register with the server.

        pyVoIP's own start() always registers. Without `register` this does
        the rest of SIPClient.start(): bind the socket and start the receive
        thread 1 s later, as pyVoIP does.
        """
        if not self.register:
            self._start_without_register()
            return self
        self._phone.start()
        status = self._phone.get_status()
        if status != PhoneStatus.REGISTERED:
            self.stop()
            raise PyVoipError(
                f"pyVoIP registration with {self.server[0]}:{self.server[1]} failed: {status}"
            )
        self._start_receiver_now()
        return self

    def stop(self) -> None:
        """Hang up an answered call, unregister, end pyVoIP's SIP thread and close its socket.

        This is VoIPPhone.stop() in an order that lets the SIP receive thread
        end first: pyVoIP closes the socket while that thread may still use
        it, which raises OSError in the thread.
        """
        phone, sip = self._phone, self._phone.sip
        for call in list(phone.calls.values()):
            if call.state == CallState.ANSWERED:
                call.hangup()
        if not sip.NSD:
            return
        if sip.registerThread is not None:
            sip.registerThread.cancel()
        if phone.get_status() == PhoneStatus.REGISTERED:
            try:
                sip.deregister()
            except OSError as exc:
                logger.warning("pyVoIP unregister failed: %s", exc)
        with sip.recvLock:
            sip.NSD = False
        for thread in threading.enumerate():
            function = getattr(thread, "function", None)
            if thread is self._receiver or _is_method_of(function, sip):
                thread.join(STOP_TIMEOUT_S)
        sip._close_sockets()
        phone.NSD = False

    def __enter__(self) -> PyVoipClient:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Call control

    def dial(self, user: str, timeout_s: float = 10.0) -> None:
        """Send an INVITE for `sip:<user>@<server host>` and wait until pyVoIP's call() returns.

        pyVoIP's call() returns after a 100, 180 or 401. Without one it
        would block forever, so after `timeout_s` this unblocks its socket
        and raises PyVoipError.
        """
        result: list[VoIPCall] = []
        errors: list[BaseException] = []

        def place_call() -> None:
            try:
                result.append(self._phone.call(user))
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=place_call, name="pyvoip-invite", daemon=True)
        worker.start()
        worker.join(timeout_s)
        if worker.is_alive():
            # Linux wakes a receiver blocked on a UDP socket that is shut
            # down, and raises ENOTCONN because the socket is not connected.
            with contextlib.suppress(OSError):
                self._phone.sip.s.shutdown(socket.SHUT_RDWR)
            worker.join(STOP_TIMEOUT_S)
            raise PyVoipError(f"no provisional response to pyVoIP's INVITE within {timeout_s} s")
        if errors:
            raise PyVoipError(f"pyVoIP call() failed: {errors[0]!r}") from errors[0]
        self._call = result[0]

    def wait_established(self, timeout_s: float = 10.0) -> float:
        """Wait until pyVoIP handled the 200 to its INVITE; return that time.monotonic() instant."""

        def established() -> float | None:
            if self._recorder.established_at is not None:
                return self._recorder.established_at
            if self._recorder.end is not None:
                raise PyVoipError(f"call ended before it was established: {self._recorder.end}")
            return None

        return self._wait_for(established, timeout_s, "the 200 to the INVITE")

    def hangup(self) -> None:
        """Send BYE (pyVoIP does not wait for the 200)."""
        call = self._require_call()
        call.hangup()
        self._recorder.mark_end(CallEndedBy.LOCAL, "BYE sent")

    def wait_closed(self, timeout_s: float = 30.0) -> CallEnd:
        """Wait until the call ended (BYE either way, or a 404 or 503) and return how."""
        return self._wait_for(lambda: self._recorder.end, timeout_s, "the end of the call")

    # Audio out

    def play(self, samples: Samples) -> None:
        """Queue 8 kHz 16-bit samples as microphone audio, after whatever is still queued."""
        self._require_call().write_audio(to_pyvoip_audio(samples))

    def play_wav(self, path: Path) -> None:
        self.play(load_mono(path, SAMPLE_RATE))

    def send_digits_inband(
        self,
        digits: str,
        *,
        after_answer_s: float | None = None,
        tone_s: float = 0.1,
        gap_s: float = 0.1,
        timeout_s: float = 10.0,
    ) -> float:
        """Queue `digits` as dual tones in the audio, `tone_s` long and `gap_s` apart.

        With `after_answer_s`, the tones are queued that many seconds after
        the call was established. They play after any audio still queued.
        Returns the time.monotonic() instant they were queued.
        """
        digits = check_digits(digits)
        self._wait_after_answer(after_answer_s, timeout_s)
        gap = np.zeros(round(gap_s * SAMPLE_RATE), dtype=np.int16)
        parts = []
        for digit in digits:
            parts += [dtmf_tone(digit, tone_s, SAMPLE_RATE), gap]
        self.play(np.concatenate(parts))
        return time.monotonic()

    def send_digits_rfc4733(
        self,
        digits: str,
        *,
        after_answer_s: float | None = None,
        duration_s: float = 0.1,
        gap_s: float = 0.1,
        timeout_s: float = 10.0,
    ) -> float:
        """Send `digits` as RFC 4733 events on the call's RTP stream, `gap_s` apart.

        The payload type is the telephone-event one from the SDP answer.
        Events replace the audio packets while they last. Returns the
        time.monotonic() instant the events were queued; the first packet
        leaves within 20 ms.
        """
        digits = check_digits(digits)
        self._wait_after_answer(after_answer_s, timeout_s)
        for client in self._rtp_clients():
            client.event_payload_type()
            for digit in digits:
                client.queue_digit(digit, duration_s, gap_s)
        return time.monotonic()

    # Audio in

    def received_packets(self) -> list[RtpPacket]:
        """Return the RTP packets pyVoIP received, in arrival order (invalid ones skipped)."""
        with self._recorder.condition:
            datagrams = list(self._recorder.datagrams)
        packets = []
        for datagram, arrival in datagrams:
            try:
                packets.append(parse_rtp(datagram, arrival))
            except ValueError:
                continue
        return packets

    def received_audio(self) -> Timeline:
        """Return the G.711 audio pyVoIP received, laid out by RTP timestamp."""
        return audio_from_rtp(self.received_packets())

    def received_digits(self) -> str:
        """Return the RFC 4733 digits pyVoIP reported so far (one per event start)."""
        self._digits += str(self._require_call().get_dtmf(length=64))
        return self._digits

    @property
    def rtp_errors(self) -> list[str]:
        """Errors pyVoIP's RTP parser raised (kept here so its receive thread survives)."""
        with self._recorder.condition:
            return list(self._recorder.rtp_errors)

    # Internals

    def _start_without_register(self) -> None:
        sip = self._phone.sip
        sip.NSD = True
        sip.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sip.s.bind((sip.myIP, sip.myPort))
        sip.out = sip.s
        self._phone.NSD = True
        self._start_receiver_now()

    def _start_receiver_now(self) -> None:
        """Replace pyVoIP's SIP receive loop, due 1 s after start(), with one that runs now.

        pyVoIP binds a call's RTP socket only when this loop handles the
        200, so with the delay it missed up to the first second of audio
        that a server sends right after answering.
        """
        sip = self._phone.sip
        for thread in threading.enumerate():
            function = getattr(thread, "function", None)
            is_receiver = getattr(function, "__name__", "") == "recv_loop"
            if isinstance(thread, threading.Timer) and is_receiver and _is_method_of(function, sip):
                thread.cancel()
                thread.join(1.0)
                if thread.is_alive():
                    return  # The timer had fired: its thread runs pyVoIP's loop.
        self._receiver = threading.Thread(target=self._receive_sip, name="pyvoip-sip", daemon=True)
        self._receiver.start()

    def _receive_sip(self) -> None:
        """Run pyVoIP's SIPClient.recv_loop, but make the socket blocking again under the lock.

        pyVoIP's loop restores blocking mode after releasing the lock, so a
        call() that takes the lock in between reads a non-blocking socket
        and raises BlockingIOError after its INVITE went out.
        """
        sip = self._phone.sip
        while sip.NSD:
            idle = False
            with sip.recvLock:
                try:
                    sip.s.setblocking(False)
                    sip.recv()
                except BlockingIOError:
                    idle = True
                except OSError:
                    if not sip.NSD:
                        return
                    raise
                finally:
                    with contextlib.suppress(OSError):
                        sip.s.setblocking(True)
            if idle:
                time.sleep(0.01)

    def _rtp_clients(self) -> list[_RecordingRtpClient]:
        clients = [c for c in self._require_call().RTPClients if isinstance(c, _RecordingRtpClient)]
        if not clients:
            raise PyVoipError("the call has no RTP stream yet: wait_established() first")
        return clients

    def _wait_after_answer(self, after_answer_s: float | None, timeout_s: float) -> None:
        if after_answer_s is None:
            return
        moment = self.wait_established(timeout_s) + after_answer_s
        with self._recorder.condition:
            while (remaining := moment - time.monotonic()) > 0:
                if self._recorder.end is not None:
                    raise PyVoipError("call ended before the digits were sent")
                self._recorder.condition.wait(remaining)

    def _wait_for(self, probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
        deadline = time.monotonic() + timeout_s
        with self._recorder.condition:
            while True:
                result = probe()
                if result is not None:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PyVoipError(f"timed out after {timeout_s} s waiting for {what}")
                self._recorder.condition.wait(remaining)

    def _require_call(self) -> VoIPCall:
        if self._call is None:
            raise PyVoipError("no call: dial() first")
        return self._call
