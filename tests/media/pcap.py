"""A minimal reader for classic pcap files of Ethernet/IPv4/UDP packets (test fixtures)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class UdpDatagram:
    time_s: float
    payload: bytes


def read_udp_payloads(path: Path) -> list[UdpDatagram]:
    """Return the UDP payloads of an Ethernet pcap file, in capture order."""
    data = path.read_bytes()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        endian = "<"
    elif magic == b"\xa1\xb2\xc3\xd4":
        endian = ">"
    else:
        raise ValueError(f"{path.name}: not a classic pcap file")
    (linktype,) = struct.unpack_from(endian + "I", data, 20)
    if linktype != 1:
        raise ValueError(f"{path.name}: link type {linktype} is not Ethernet")
    datagrams = []
    offset = 24
    while offset + 16 <= len(data):
        seconds, micros, captured, _ = struct.unpack_from(endian + "IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        if len(frame) < 14 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        header_len = (ip[0] & 0x0F) * 4
        if ip[9] != 17:
            continue
        (udp_len,) = struct.unpack_from("!H", ip, header_len + 4)
        payload = ip[header_len + 8 : header_len + udp_len]
        datagrams.append(UdpDatagram(seconds + micros / 1e6, bytes(payload)))
    return datagrams
