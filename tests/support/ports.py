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
