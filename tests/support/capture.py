"""Capture UDP datagrams on the loopback interface with an AF_PACKET socket.

Some real peers (SIPp) cannot tell a test what audio they received. The
test then watches the wire instead: it captures every IPv4 UDP datagram on
`lo` to or from the peer's RTP port. This needs root (or
CAP_NET_RAW), which CI has.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass

ETH_P_ALL = 0x0003
ETHERNET_HEADER = 14
IPPROTO_UDP = 17
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SOL_PACKET = 263
PACKET_STATISTICS = 6
RECEIVE_BUFFER_BYTES = 8 << 20


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


def udp_port_filter(port: int) -> bytes:
    """Return a classic BPF program that accepts IPv4 UDP datagrams from or to `port`.

    Without it the socket queues every frame on `lo`, and the busy loopback
    of a CI machine overflows the queue, dropping the datagrams we want.
    Later IP fragments carry no UDP header, so they are rejected.
    """
    instructions = [
        (0x28, 0, 0, 12),  # ldh [12]: EtherType
        (0x15, 0, 10, 0x0800),  # IPv4, else reject
        (0x30, 0, 0, 23),  # ldb [23]: IP protocol
        (0x15, 0, 8, IPPROTO_UDP),  # UDP, else reject
        (0x28, 0, 0, 20),  # ldh [20]: flags and fragment offset
        (0x45, 6, 0, 0x1FFF),  # a later fragment: reject
        (0xB1, 0, 0, ETHERNET_HEADER),  # x = IP header length
        (0x48, 0, 0, ETHERNET_HEADER),  # ldh [x + 14]: UDP source port
        (0x15, 2, 0, port),  # accept
        (0x48, 0, 0, ETHERNET_HEADER + 2),  # ldh [x + 16]: UDP destination port
        (0x15, 0, 1, port),
        (0x06, 0, 0, 0x40000),  # accept up to 256 KiB of the frame
        (0x06, 0, 0, 0),  # reject
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in instructions)


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
        self._filter = ctypes.create_string_buffer(udp_port_filter(port))
        program = struct.pack("HL", len(self._filter.raw) // 8, ctypes.addressof(self._filter))
        self._socket.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)
        self._socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
        self._socket.bind(("lo", 0))
        self.kernel_drops = 0
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
        if self._socket.fileno() >= 0:
            self.kernel_drops += self.read_kernel_drops()
            self._socket.close()

    def read_kernel_drops(self) -> int:
        """Return the frames the kernel dropped since the last call (queue full)."""
        _, drops = struct.unpack("II", self._socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return int(drops)

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
