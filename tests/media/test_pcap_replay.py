"""SIPp's captured RTP replayed over UDP into a session: third-party packets, real sockets."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np

from ivr.channel import DtmfInput
from media import g711
from media.leg import MediaLeg
from media.rtp import RtpPacket
from media.rtp_session import RtpPortPool, RtpSession, RtpSessionConfig
from tests.media.conftest import LOOPBACK, RecordingHandler, wait_for
from tests.media.pcap import read_udp_payloads

DATA = Path(__file__).parent.parent / "data" / "media"


async def replay(path: Path, target: tuple[str, int], count: int | None = None) -> int:
    """Send the capture's UDP payloads to `target` at their captured pace; return the count."""
    datagrams = read_udp_payloads(path)[:count]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        for datagram in datagrams:
            due = start + datagram.time_s - datagrams[0].time_s
            await asyncio.sleep(max(0.0, due - loop.time()))
            sender.sendto(datagram.payload, target)
    finally:
        sender.close()
    return len(datagrams)


async def test_sipp_pcma_capture_decoded_in_20ms_frames(port_pool: RtpPortPool) -> None:
    config = RtpSessionConfig(codec_name="PCMA", payload_type=8)
    session = await RtpSession.open_from_pool(port_pool, config, local_host=LOOPBACK)
    handler = RecordingHandler()
    session.attach(handler)
    try:
        sent = await replay(DATA / "g711a.pcap", session.local_address, count=100)
        # UDP on a loaded machine may drop a few datagrams while the loop stalls.
        await wait_for(lambda: session.stats.packets_received >= sent - 5)
        received = session.stats.packets_received
        await wait_for(lambda: len(handler.frames) >= received * 3 // 2 - 3)
    finally:
        await session.close()

    assert all(len(frame.pcm) == 320 for frame in handler.frames)
    packets = [RtpPacket.parse(d.payload) for d in read_udp_payloads(DATA / "g711a.pcap")[:100]]
    expected = g711.alaw_decode(b"".join(p.payload for p in packets))
    samples = np.frombuffer(expected, "<i2").astype(float)
    assert np.sqrt(np.mean(samples**2)) > 300  # the capture holds audible audio
    # Each played 20 ms frame is a slice of the capture (30 ms packets re-cut to 20 ms).
    # Frames concealed after a stall of a loaded machine are not, hence 90 %.
    copied = [frame for frame in handler.frames if frame.pcm in expected]
    assert len(copied) >= 0.9 * len(handler.frames)
    assert len(copied) >= 0.9 * (received * 3 // 2 - 3)


async def test_sipp_dtmf_capture_gives_one_digit(port_pool: RtpPortPool) -> None:
    session = await RtpSession.open_from_pool(port_pool, RtpSessionConfig(), local_host=LOOPBACK)
    leg = MediaLeg(session, call_id="pcap")
    try:
        await replay(DATA / "dtmf_2833_pound.pcap", session.local_address)
        assert await leg.next_input(10) == DtmfInput("#", 280)
        assert await leg.next_input(0.5) is None
    finally:
        await leg.close()
