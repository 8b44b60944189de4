"""Pick free loopback ports for the test peers."""

from __future__ import annotations

import random
import socket


def free_udp_port() -> int:
    """Return a UDP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_tcp_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_udp_port_pair(tries: int = 200) -> int:
    """Return an even UDP port P such that P and P + 1 are both free (RTP and RTCP).

    Also checks P + 2 and P + 3, which SIPp's `-rtp_echo` binds for video.
    """
    for _ in range(tries):
        base = random.randrange(20_000, 60_000, 2)
        probes: list[socket.socket] = []
        try:
            for port in range(base, base + 4):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return base
    raise RuntimeError(f"no four free consecutive UDP ports found in {tries} tries")


def free_port_block(
    *, udp_offsets: tuple[int, ...] = (0,), tcp_offsets: tuple[int, ...] = (), tries: int = 200
) -> int:
    """Return a port P such that P + each UDP offset and P + each TCP offset are free on 127.0.0.1.

    baresip needs this for its SIP port: it binds UDP P, TCP P and TLS on TCP P + 1.
    """
    for _ in range(tries):
        base = random.randrange(20_000, 60_000)
        probes: list[socket.socket] = []
        try:
            for kind, offsets in (
                (socket.SOCK_DGRAM, udp_offsets),
                (socket.SOCK_STREAM, tcp_offsets),
            ):
                for offset in offsets:
                    probe = socket.socket(socket.AF_INET, kind)
                    probes.append(probe)
                    probe.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return base
    raise RuntimeError(f"no free block of ports found in {tries} tries")
