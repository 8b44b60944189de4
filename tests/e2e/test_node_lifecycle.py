"""A node's contract: health check, OPTIONS, graceful stop with BYE and released ports."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.support.capture import LoopbackCapture, capture_available
from tests.support.node import REPOSITORY, voxgate_node
from tests.support.ports import free_udp_port

SCENARIO = REPOSITORY / "tests" / "data" / "e2e" / "sipp_wait_for_bye.xml"
WAIT_S = 30.0


def options_request(sip_port: int, local_port: int) -> bytes:
    branch = f"z9hG4bK{uuid.uuid4().hex[:16]}"
    lines = [
        f"OPTIONS sip:127.0.0.1:{sip_port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch={branch}",
        "Max-Forwards: 70",
        f"From: <sip:probe@127.0.0.1:{local_port}>;tag={uuid.uuid4().hex[:8]}",
        f"To: <sip:127.0.0.1:{sip_port}>",
        f"Call-ID: {uuid.uuid4().hex}@127.0.0.1",
        "CSeq: 1 OPTIONS",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def test_health_and_options(tmp_path: Path) -> None:
    with voxgate_node(tmp_path) as node:
        status, body = node.health()
        assert status == 200
        assert body["components"] == {"sip": True, "rtp": True, "ivr": True, "acd": True}

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            probe.settimeout(5)
            probe.sendto(
                options_request(node.sip_port, probe.getsockname()[1]), ("127.0.0.1", node.sip_port)
            )
            reply, _ = probe.recvfrom(65_535)
        assert reply.startswith(b"SIP/2.0 200 ")
        assert b"\r\nAllow:" in reply or b"\r\nallow:" in reply.lower()


@pytest.mark.peer
@pytest.mark.skipif(not capture_available(), reason="packet capture on lo needs root")
def test_sigterm_sends_bye_and_frees_ports(tmp_path: Path) -> None:
    media_port = free_udp_port()
    with voxgate_node(tmp_path) as node, LoopbackCapture(media_port) as capture:
        command = [
            "sipp", f"127.0.0.1:{node.sip_port}", "-sf", str(SCENARIO), "-m", "1",
            "-s", "1000", "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(media_port),
            "-nostdin", "-timeout", "90s", "-timeout_error",
        ]  # fmt: skip
        sipp = subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + WAIT_S
            while not capture.received() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert capture.received(), "the call never started sending audio"

            node.process.send_signal(signal.SIGTERM)
            assert node.process.wait(timeout=WAIT_S) == 0
            # SIPp exits 0 only after it received the BYE and answered 200 OK.
            assert sipp.wait(timeout=WAIT_S) == 0
        finally:
            if sipp.poll() is None:
                sipp.kill()
                sipp.wait()

        log = node.log()
        assert "Traceback" not in log
        rtp_port = capture.received()[0].source[1]
        for port in (node.sip_port, rtp_port):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", port))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", node.http_port))
