"""Tests of the loopback capture's kernel filter."""

from __future__ import annotations

import socket

from tests.support.capture import LoopbackCapture, udp_port_filter
from tests.support.ports import free_udp_port
from tests.support.waiting import wait_until


def test_filter_program_is_whole_instructions() -> None:
    program = udp_port_filter(5004)
    assert len(program) % 8 == 0
    assert (5004).to_bytes(4, "little") in program


def test_capture_keeps_only_its_port(needs_capture: None) -> None:
    port, other = free_udp_port(), free_udp_port()
    with (
        LoopbackCapture(port) as capture,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as watched,
    ):
        watched.bind(("127.0.0.1", port))
        for index in range(300):
            sender.sendto(b"wanted %d" % index, ("127.0.0.1", port))
            sender.sendto(b"other", ("127.0.0.1", other))
        watched.sendto(b"reply", ("127.0.0.1", other))
        wait_until(lambda: len(capture.everything()) >= 301, 10, "301 captured datagrams")
    payloads = [datagram.payload for datagram in capture.received()]
    assert payloads == [b"wanted %d" % index for index in range(300)]
    assert [datagram.payload for datagram in capture.sent()] == [b"reply"]
    assert capture.kernel_drops == 0
