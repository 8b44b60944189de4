"""Capture UDP datagrams on the loopback interface with an AF_PACKET socket.

Some real peers (SIPp) cannot tell a test what audio they received. The
test then watches the wire instead: it captures every IPv4 UDP datagram on
`lo` to or from the peer's RTP port. This needs root (or
CAP_NET_RAW), which CI has.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass

ETH_P_ALL = 0x0003
ETHERNET_HEADER = 14
IPPROTO_UDP = 17


@dataclass(frozen=True, slots=True)
class Datagram:
    """One captured UDP datagram."""

    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes
    captured_at: float


def capture_available() -> bool:
    """Whether this process may open a packet socket (root or CAP_NET_RAW)."""
    return os.geteuid() == 0


def parse_ipv4_udp(frame: bytes) -> tuple[tuple[str, int], tuple[str, int], bytes] | None:
    """Return (source, destination, payload) of an Ethernet/IPv4/UDP frame, else None."""
    if len(frame) < ETHERNET_HEADER + 20 + 8:
        return None
    (ether_type,) = struct.unpack_from("!H", frame, 12)
    if ether_type != 0x0800:
        return None
    ip = frame[ETHERNET_HEADER:]
    header_length = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ip[9] != IPPROTO_UDP or len(ip) < header_length + 8:
        return None
    source_ip = socket.inet_ntoa(ip[12:16])
    destination_ip = socket.inet_ntoa(ip[16:20])
    source_port, destination_port, udp_length = struct.unpack_from("!HHH", ip, header_length)
    payload = ip[header_length + 8 : header_length + udp_length]
    return (source_ip, source_port), (destination_ip, destination_port), payload


class LoopbackCapture:
    """Collects UDP datagrams sent to or from `port` on `lo` until stopped.

    Loopback frames are seen once per direction (outgoing and incoming), so
    only frames marked as incoming (PACKET_HOST) are kept.
    """

    def __init__(self, port: int, *, max_datagrams: int = 200_000) -> None:
        self.port = port
        self.max_datagrams = max_datagrams
        self.datagrams: list[Datagram] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._socket.bind(("lo", 0))
        self._socket.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name=f"capture-{port}", daemon=True)

    def __enter__(self) -> LoopbackCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._socket.close()

    def everything(self) -> list[Datagram]:
        """Datagrams to or from the watched port, in capture order."""
        with self._lock:
            return list(self.datagrams)

    def received(self) -> list[Datagram]:
        """Datagrams whose destination is the watched port."""
        return [d for d in self.everything() if d.destination[1] == self.port]

    def snapshot(self) -> list[Datagram]:
        """The same as `received`: what the peer on the watched port was sent."""
        return self.received()

    def sent(self) -> list[Datagram]:
        """Datagrams whose source is the watched port."""
        return [d for d in self.everything() if d.source[1] == self.port]

    def _run(self) -> None:
        packet_host = 0
        while not self._stop.is_set() and len(self.datagrams) < self.max_datagrams:
            try:
                frame, address = self._socket.recvfrom(65_535)
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] != packet_host:
                continue
            parsed = parse_ipv4_udp(frame)
            if parsed is None or self.port not in (parsed[0][1], parsed[1][1]):
                continue
            source, destination, payload = parsed
            with self._lock:
                self.datagrams.append(Datagram(source, destination, payload, time.monotonic()))
