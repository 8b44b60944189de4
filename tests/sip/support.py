"""Shared helpers for SIP tests: a scripted call handler, SIPp runner, raw UDP peer."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from signaling.sip.core import CoreConfig, UserAgent
from signaling.sip.endpoint import InboundCall
from signaling.sip.errors import CallEnded, SipSyntaxError
from signaling.sip.events import CallOffered, CallTerminated, CoreEvent
from signaling.sip.headers import Headers
from signaling.sip.message import SipMessage, SipResponse
from signaling.sip.parser import parse_datagram
from signaling.sip.routing import Outgoing, Peer
from tests.support.ports import free_tcp_port, free_udp_port

DATA = Path(__file__).resolve().parent.parent / "data" / "sip"
SIPP = shutil.which("sipp")

ANSWER_SDP = (
    b"v=0\r\no=VoxGate 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


@dataclass
class ScriptedHandler:
    """Answers, rings or rejects every call, and records calls and end reasons."""

    mode: str = "answer"
    reject_status: int = 486
    calls: asyncio.Queue[InboundCall] = field(default_factory=asyncio.Queue)
    reasons: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    reoffers: list[bytes | None] = field(default_factory=list)
    infos: list[tuple[str, bytes]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    async def on_invite(self, call: InboundCall) -> None:
        self.calls.put_nowait(call)
        call.on_reoffer = self._answer_reoffer
        call.on_info = lambda content_type, body: self.infos.append((content_type, body))
        if self.mode == "answer":
            try:
                await call.answer(ANSWER_SDP)
            except CallEnded as error:
                self.errors.append(error)
        elif self.mode == "hangup":
            await call.answer(ANSWER_SDP)
            await call.hangup()
        elif self.mode == "ring":
            await call.ring()
        elif self.mode == "reject":
            await call.reject(self.reject_status)
        self.reasons.put_nowait(await call.wait_ended())

    async def _answer_reoffer(self, sdp: bytes | None) -> bytes:
        """Answer hold (sendonly) with recvonly and anything else with sendrecv."""
        self.reoffers.append(sdp)
        if sdp is not None and b"a=sendonly" in sdp:
            return ANSWER_SDP.replace(b"a=sendrecv", b"a=recvonly")
        return ANSWER_SDP


async def run_sipp(
    scenario: str,
    target_port: int,
    workdir: Path,
    *,
    transport: str = "u1",
    max_seconds: float = 60,
    calls: int = 1,
    rate: int = 10,
) -> tuple[int, str]:
    """Run `calls` SIPp calls of `scenario` at `rate` per second; return (exit code, log)."""
    assert SIPP is not None
    local_port = free_tcp_port() if transport.startswith("t") else free_udp_port()
    process = await asyncio.create_subprocess_exec(
        SIPP,
        "-sf",
        str(DATA / "sipp" / scenario),
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-t",
        transport,
        "-i",
        "127.0.0.1",
        "-p",
        str(local_port),
        "-s",
        "15550100000",
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
        "-trace_err",
        f"127.0.0.1:{target_port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=workdir,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), max_seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    errors = await asyncio.to_thread(_read_error_logs, workdir)
    return process.returncode or 0, output.decode(errors="replace")[-3000:] + errors


def _read_error_logs(workdir: Path) -> str:
    return "".join(path.read_text(errors="replace") for path in workdir.glob("*_errors.log"))


class UdpPeer(asyncio.DatagramProtocol):
    """A raw SIP peer on a loopback UDP socket that collects every datagram."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.received.put_nowait(data)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))

    async def next(self, max_seconds: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.received.get(), max_seconds)

    async def next_matching(self, prefix: bytes, max_seconds: float = 5.0) -> bytes:
        """Return the next datagram starting with `prefix`, skipping others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_seconds
        while True:
            data = await asyncio.wait_for(self.received.get(), max(0.01, deadline - loop.time()))
            if data.startswith(prefix):
                return data

    async def silent_for(self, seconds: float) -> bool:
        """True if nothing arrives within `seconds` (for checks that expect silence)."""
        try:
            await asyncio.wait_for(self.received.get(), seconds)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_udp_peer() -> UdpPeer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", 0))
    return peer


class CoreHarness:
    """Drives a `UserAgent` in memory on a virtual clock, as one UDP peer would."""

    def __init__(self, config: CoreConfig | None = None, peer: Peer | None = None) -> None:
        self.core = UserAgent(config or CoreConfig(force_rport=True))
        self.peer = peer or Peer("udp", "127.0.0.1", 5070)
        self.now = 1000.0
        self.sent: list[Outgoing] = []
        self.events: list[CoreEvent] = []

    def _collect(self) -> list[SipMessage]:
        outgoing = self.core.take_outgoing()
        self.sent += outgoing
        self.events += self.core.take_events()
        return [parse_loose(item.data) for item in outgoing]

    def feed(self, data: bytes) -> list[SipMessage]:
        """Deliver one datagram; return the messages the core sent in reaction.

        The 100 Trying of a new INVITE goes out at the end, as the endpoint
        sends it once the application had its first chance to answer.
        """
        self.core.receive(data, self.peer, self.now)
        if self.core.trying_due:
            self.core.send_trying(self.now)
        return self._collect()

    def run(self, command: Callable[[UserAgent, float], None]) -> list[SipMessage]:
        command(self.core, self.now)
        return self._collect()

    def advance(self, seconds: float) -> list[SipMessage]:
        """Move the virtual clock, firing timers in order; return what was sent."""
        end = self.now + seconds
        sent: list[SipMessage] = []
        while True:
            deadline = self.core.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.core.tick(self.now)
            sent += self._collect()
        self.now = end
        return sent

    def offered(self) -> list[CallOffered]:
        return [event for event in self.events if isinstance(event, CallOffered)]

    def ended(self) -> list[CallTerminated]:
        return [event for event in self.events if isinstance(event, CallTerminated)]


def parse_loose(data: bytes) -> SipMessage:
    """Parse what the core sent; a response echoing a broken Via is kept unvalidated."""
    try:
        return parse_datagram(data)
    except SipSyntaxError:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        _, status, reason = lines[0].split(" ", 2)
        headers = Headers([tuple(line.split(": ", 1)) for line in lines[1:]])  # type: ignore[misc]
        return SipResponse(int(status), reason, headers, body)


def responses(messages: list[SipMessage]) -> list[SipResponse]:
    return [message for message in messages if isinstance(message, SipResponse)]


def statuses(messages: list[SipMessage]) -> list[int]:
    return [message.status for message in responses(messages)]


_CALL_ID_LINE = re.compile(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
_CONTENT_LENGTH_LINE = re.compile(rb"^(?:Content-Length|l)[ \t]*:[ \t]*(\d+)", re.IGNORECASE | re.M)


def call_id_of(data: bytes) -> bytes | None:
    match = _CALL_ID_LINE.search(data.split(b"\r\n\r\n", 1)[0])
    return match.group(1) if match else None


def status_of(data: bytes) -> int | None:
    """Return the status code of a response datagram, or None for a request."""
    if not data.startswith(b"SIP/2.0 "):
        return None
    return int(data[8:11])


def options_probe(port: int, call_id: str, transport: str = "UDP") -> bytes:
    return (
        f"OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK-{call_id};rport\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=probe\r\nTo: <sip:probe@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def read_stream_message(reader: asyncio.StreamReader) -> bytes | None:
    """Read one SIP message framed by Content-Length; None at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    match = _CONTENT_LENGTH_LINE.search(head)
    length = int(match.group(1)) if match else 0
    return head + await reader.readexactly(length)


OFFER_SDP = (
    b"v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def sip_request(
    method: str,
    *,
    call_id: str = "call-1",
    branch: str = "z9hG4bK-b1",
    from_tag: str = "caller1",
    to_tag: str | None = None,
    cseq: int = 1,
    body: bytes = b"",
    content_type: str = "application/sdp",
    extra: tuple[str, ...] = (),
    uri: str = "sip:15550100000@127.0.0.1",
    port: int = 5070,
) -> bytes:
    """Build a request as the caller on 127.0.0.1:`port` would send it."""
    to = "<sip:15550100000@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:15550100001@127.0.0.1>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:15550100001@127.0.0.1:{port}>",
        *extra,
    ]
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def to_tag_of(message: SipMessage) -> str | None:
    return message.parsed.to.tag if message.info else None


class SippServer:
    """A SIPp UAS running one scenario on a free UDP port of 127.0.0.1."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, workdir: Path) -> None:
        self.process = process
        self.port = port
        self.workdir = workdir

    async def finish(self, max_seconds: float = 30.0) -> tuple[int, str]:
        """Wait for SIPp to end its call; return (exit code, log)."""
        try:
            output, _ = await asyncio.wait_for(self.process.communicate(), max_seconds)
        except TimeoutError:
            self.kill()
            await self.process.wait()
            raise
        errors = await asyncio.to_thread(_read_error_logs, self.workdir)
        return self.process.returncode or 0, output.decode(errors="replace")[-3000:] + errors

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


async def start_sipp_uas(scenario: str, workdir: Path, *, calls: int = 1) -> SippServer:
    """Start SIPp as a UAS that ends after `calls` calls of `scenario` (UDP only).

    Requests sent before SIPp binds are lost, which Timer A's retransmission covers.
    """
    assert SIPP is not None
    port = free_udp_port()
    process = await asyncio.create_subprocess_exec(
        SIPP,
        "-sf",
        str(DATA / "sipp" / scenario),
        "-m",
        str(calls),
        "-t",
        "u1",
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
        "-trace_err",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=workdir,
    )
    return SippServer(process, port, workdir)
