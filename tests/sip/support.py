"""Shared helpers for SIP tests: a scripted call handler, SIPp runner, raw UDP peer."""

from __future__ import annotations

import asyncio
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from signaling.sip.endpoint import InboundCall

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

    async def on_invite(self, call: InboundCall) -> None:
        self.calls.put_nowait(call)
        if self.mode == "answer":
            await call.answer(ANSWER_SDP)
        elif self.mode == "ring":
            await call.ring()
        elif self.mode == "reject":
            await call.reject(self.reject_status)
        self.reasons.put_nowait(await call.wait_ended())


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_sipp(
    scenario: str,
    target_port: int,
    workdir: Path,
    *,
    transport: str = "u1",
    max_seconds: float = 60,
) -> tuple[int, str]:
    """Run one SIPp call of `scenario` against 127.0.0.1:`target_port`; return (exit code, log)."""
    assert SIPP is not None
    local_port = free_port(socket.SOCK_STREAM if transport.startswith("t") else socket.SOCK_DGRAM)
    process = await asyncio.create_subprocess_exec(
        SIPP,
        "-sf",
        str(DATA / "sipp" / scenario),
        "-m",
        "1",
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
