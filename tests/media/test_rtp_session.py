from __future__ import annotations

import asyncio
import itertools
import re
import socket

import numpy as np
import pytest

from ivr.channel import CallEnded, DtmfInput, SpeechStarted
from media import g711
from media.audio import PcmAudio
from media.codecs import codec_names, get_codec
from media.leg import MediaLeg
from media.rtp import RtpPacket
from media.rtp_session import LatchState, RtpPortPool, RtpSession, RtpSessionConfig
from tests.media.conftest import LOOPBACK, RecordingHandler, SessionPair, rms, tone_pcm, wait_for


def test_port_pool_even_ports_reused() -> None:
    pool = RtpPortPool(20001, 20007)
    ports = [pool.acquire(), pool.acquire(), pool.acquire()]
    assert ports == [20002, 20004, 20006]
    with pytest.raises(RuntimeError, match="no free RTP port"):
        pool.acquire()
    pool.release(20004)
    pool.release(20004)
    assert pool.free_count == 1
    assert pool.acquire() == 20004


def test_sessions_draw_distinct_seeds() -> None:
    # Three blocks of seeds and part of a fourth.
    sessions = [RtpSession(RtpSessionConfig()) for _ in range(200)]

    assert len({session.ssrc for session in sessions}) == 200
    assert len({session._cname for session in sessions}) == 200
    assert all(re.fullmatch(r"voxgate-[0-9a-f]{12}", session._cname) for session in sessions)


async def test_played_tone_arrives_at_peer(session_pair: SessionPair) -> None:
    a, b = session_pair
    received = RecordingHandler()
    b.attach(received)
    leg = MediaLeg(a, call_id="a")
    tone = PcmAudio(tone_pcm(8000, 0.5), 8000)
    assert await asyncio.wait_for(leg.play(tone), 10) is None
    await wait_for(lambda: sum(rms(f.pcm) > 2000 for f in received.frames) >= 20)
    loud = [f for f in received.frames if rms(f.pcm) > 2000]
    assert all(len(f.pcm) == 320 and f.sample_rate == 8000 for f in received.frames)
    assert 20 <= len(loud) <= 26
    assert b.latch_state is LatchState.LATCHED


async def test_rfc4733_digits_arrive_once_each(session_pair: SessionPair) -> None:
    a, b = session_pair
    a.attach(RecordingHandler())
    leg_b = MediaLeg(b, call_id="b")
    a.send_dtmf("1#5*", duration_ms=100)
    digits = []
    for _ in range(4):
        item = await leg_b.next_input(10)
        assert isinstance(item, DtmfInput)
        digits.append(item)
    assert "".join(d.digit for d in digits) == "1#5*"
    assert {d.duration_ms for d in digits} == {100}
    assert await leg_b.next_input(0.3) is None


async def test_digit_interrupts_playback(session_pair: SessionPair) -> None:
    a, b = session_pair
    a.attach(RecordingHandler())
    leg_b = MediaLeg(b, call_id="b")
    long_prompt = PcmAudio(tone_pcm(8000, 30.0), 8000)
    play = asyncio.create_task(leg_b.play(long_prompt, interrupt_on_dtmf=True))
    await asyncio.sleep(0)
    a.send_dtmf("7")
    result = await asyncio.wait_for(play, 10)
    assert result == DtmfInput("7", 100)
    assert await leg_b.next_input(0.2) is None


async def test_digit_without_dtmf_policy_does_not_interrupt(session_pair: SessionPair) -> None:
    a, b = session_pair
    a.attach(RecordingHandler())
    leg_b = MediaLeg(b, call_id="b")
    prompt = PcmAudio(tone_pcm(8000, 0.6), 8000)
    play = asyncio.create_task(leg_b.play(prompt, interrupt_on_dtmf=False))
    a.send_dtmf("3", duration_ms=60)
    assert await asyncio.wait_for(play, 10) is None
    assert await leg_b.next_input(10) == DtmfInput("3", 60)


async def test_typed_ahead_digit_returned_by_play(session_pair: SessionPair) -> None:
    a, b = session_pair
    a.attach(RecordingHandler())
    leg_b = MediaLeg(b, call_id="b")
    a.send_dtmf("9")
    await wait_for(lambda: bool(leg_b._inputs))
    result = await leg_b.play(PcmAudio(tone_pcm(8000, 5.0), 8000), interrupt_on_dtmf=True)
    assert result == DtmfInput("9", 100)


async def test_clear_inputs_drops_typed_ahead_digits(session_pair: SessionPair) -> None:
    a, b = session_pair
    a.attach(RecordingHandler())
    leg_b = MediaLeg(b, call_id="b")
    a.send_dtmf("12")
    await wait_for(lambda: len(leg_b._inputs or ()) == 2)
    leg_b.clear_inputs()
    assert await leg_b.next_input(0.1) is None


async def test_close_ends_waiters_with_call_ended(session_pair: SessionPair) -> None:
    _, b = session_pair
    leg_b = MediaLeg(b, call_id="b")
    waiter = asyncio.create_task(leg_b.next_input(30))
    player = asyncio.create_task(leg_b.play(PcmAudio(tone_pcm(8000, 30.0), 8000)))
    await asyncio.sleep(0.05)
    await leg_b.close()
    with pytest.raises(CallEnded):
        await waiter
    with pytest.raises(CallEnded):
        await player
    with pytest.raises(CallEnded):
        await leg_b.next_input(1)


async def test_sender_packets_have_consistent_header_fields(port_pool: RtpPortPool) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind((LOOPBACK, 0))
    receiver.setblocking(False)
    session = await RtpSession.open_from_pool(
        port_pool, RtpSessionConfig(), local_host=LOOPBACK, remote=receiver.getsockname()
    )
    handler = RecordingHandler(outbound=[PcmAudio(tone_pcm(8000, 0.02), 8000)] * 5)
    session.attach(handler)
    session.send_dtmf("4", duration_ms=60)
    loop = asyncio.get_running_loop()
    packets: list[RtpPacket] = []
    try:
        async with asyncio.timeout(10):
            while len(packets) < 14:
                data = await loop.sock_recv(receiver, 2048)
                packets.append(RtpPacket.parse(data))
    finally:
        await session.close()
        receiver.close()

    assert {p.ssrc for p in packets} == {session.ssrc}
    for earlier, later in itertools.pairwise(packets):
        assert (later.sequence_number - earlier.sequence_number) % 65536 == 1
    audio = [p for p in packets if p.payload_type == 0]
    events = [p for p in packets if p.payload_type == 101]
    assert packets[0].marker
    assert len(events) == 5  # 2 updates + 3 end packets for 60 ms
    assert events[0].marker and not any(p.marker for p in events[1:])
    assert len({p.timestamp for p in events}) == 1
    for earlier, later in itertools.pairwise(audio):
        assert (later.timestamp - earlier.timestamp) % 2**32 % 160 == 0
    assert all(len(p.payload) == 160 for p in audio)


@pytest.mark.parametrize(
    ("codec_name", "payload_type", "silence_byte"),
    [
        ("PCMU", 0, g711.ULAW_SILENCE),
        ("PCMA", 8, g711.ALAW_SILENCE),
        ("PCMU", 0, g711.ULAW_SILENCE),
    ],
)
async def test_g711_silence_payload_per_codec(
    port_pool: RtpPortPool, codec_name: str, payload_type: int, silence_byte: int
) -> None:
    """Sessions of both G.711 codecs, one after the other, each send their own silence."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind((LOOPBACK, 0))
    receiver.setblocking(False)
    config = RtpSessionConfig(codec_name=codec_name, payload_type=payload_type)
    session = await RtpSession.open_from_pool(
        port_pool, config, local_host=LOOPBACK, remote=receiver.getsockname()
    )
    session.attach(RecordingHandler())
    loop = asyncio.get_running_loop()
    packets: list[RtpPacket] = []
    try:
        async with asyncio.timeout(10):
            while len(packets) < 3:
                packets.append(RtpPacket.parse(await loop.sock_recv(receiver, 2048)))
    finally:
        await session.close()
        receiver.close()

    assert {p.payload_type for p in packets} == {payload_type}
    assert {p.payload for p in packets} == {bytes([silence_byte]) * 160}


async def test_latched_session_drops_other_sources(session_pair: SessionPair) -> None:
    a, b = session_pair
    received = RecordingHandler()
    b.attach(received)
    a.attach(RecordingHandler())
    await wait_for(lambda: b.latch_state is LatchState.LATCHED)
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        intruder.bind((LOOPBACK, 0))
        packet = RtpPacket(0, 1, 1, 99, b"\x00" * 160).serialize()
        for _ in range(3):
            intruder.sendto(packet, b.local_address)
        await wait_for(lambda: b.stats.wrong_source >= 3)
    finally:
        intruder.close()
    assert b.remote == a.local_address


async def test_malformed_and_unnegotiated_packets_are_counted(session_pair: SessionPair) -> None:
    _a, b = session_pair
    b.attach(RecordingHandler())
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.sendto(b"\x40junk", b.local_address)
        sender.sendto(RtpPacket(18, 1, 1, 5, b"\x00" * 20).serialize(), b.local_address)
        await wait_for(lambda: b.stats.malformed >= 1 and b.stats.wrong_payload_type >= 1)
    finally:
        sender.close()
    assert b.latch_state is LatchState.WAITING


def test_session_random_fields_differ() -> None:
    """SSRC, first sequence number, first timestamp and CNAME are drawn anew for each session."""
    sessions = [RtpSession(RtpSessionConfig(), call_id=str(n)) for n in range(200)]

    ssrcs = {s.ssrc for s in sessions}
    sequences = {s._core.sequence for s in sessions}
    timestamps = {s._core.timestamp for s in sessions}
    cnames = {s._cname for s in sessions}
    assert len(ssrcs) == 200
    assert len(timestamps) == 200
    assert len(cnames) == 200
    assert len(sequences) > 150  # 200 draws from 65,536 values repeat a few at most
    assert all(0 <= s < 2**32 for s in ssrcs | timestamps)
    assert all(0 <= s < 2**16 for s in sequences)
    assert all(re.fullmatch(r"voxgate-[0-9a-f]{12}", c) for c in cnames)
    # SSRC and timestamp come from different random bytes, so they almost never match.
    assert len(ssrcs & timestamps) < 2


def test_speech_started_type_is_importable() -> None:
    assert SpeechStarted(at_ms=5).at_ms == 5


async def test_g722_session_carries_wideband_tone(port_pool: RtpPortPool) -> None:
    config = RtpSessionConfig(codec_name="G722", payload_type=9)
    a = await RtpSession.open_from_pool(port_pool, config, local_host=LOOPBACK)
    b = await RtpSession.open_from_pool(
        port_pool, config, local_host=LOOPBACK, remote=a.local_address
    )
    a.set_remote(b.local_address)
    try:
        assert a.sample_rate == 16000
        received = RecordingHandler()
        b.attach(received)
        leg = MediaLeg(a, call_id="a")
        tone = PcmAudio(tone_pcm(16000, 0.5, hz=5000), 16000)
        assert await asyncio.wait_for(leg.play(tone), 10) is None
        await wait_for(lambda: sum(rms(f.pcm) > 2000 for f in received.frames) >= 20)
        loud = [f for f in received.frames if rms(f.pcm) > 2000]
        assert all(f.sample_rate == 16000 and len(f.pcm) == 640 for f in loud)
        samples = np.frombuffer(b"".join(f.pcm for f in loud), "<i2").astype(float)
        spectrum = np.abs(np.fft.rfft(samples))
        peak_hz = np.fft.rfftfreq(samples.size, 1 / 16000)[int(np.argmax(spectrum))]
        assert abs(peak_hz - 5000) < 20  # above 4 kHz: only a wideband codec carries it
    finally:
        await a.close()
        await b.close()


def test_codec_registry_lists_g722() -> None:
    assert {"PCMU", "PCMA", "G722"} <= set(codec_names())
    g722 = get_codec("g722")
    assert (g722.clock_rate, g722.sample_rate, g722.static_payload_type) == (8000, 16000, 9)
    with pytest.raises(KeyError, match="known codecs"):
        get_codec("opus-x")


async def test_port_free_right_after_close(port_pool: RtpPortPool) -> None:
    session = await RtpSession.open_from_pool(port_pool, RtpSessionConfig(), local_host=LOOPBACK)
    port = session.local_address[1]

    await session.close()
    reopened = await RtpSession.open(RtpSessionConfig(), local_host=LOOPBACK, local_port=port)
    bound = reopened.local_address[1]
    await reopened.close()

    assert bound == port


async def test_cancelled_close_still_releases(port_pool: RtpPortPool) -> None:
    # Without attach there is no send task, so the first wait in close() is
    # the one for the sockets, and the cancel lands there.
    session = await RtpSession.open_from_pool(port_pool, RtpSessionConfig(), local_host=LOOPBACK)
    free_before = port_pool.free_count

    closing = asyncio.ensure_future(session.close())
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing

    assert port_pool.free_count == free_before + 1


async def test_media_timeout_fires_after_peer_stops(session_pair: SessionPair) -> None:
    a, b = session_pair
    loop = asyncio.get_running_loop()
    a.attach(RecordingHandler())
    b.attach(RecordingHandler())
    fired = loop.create_future()
    a.watch_inactivity(0.5, 0.0, lambda: fired.set_result(loop.time()))
    # b sends a packet every 20 ms, so 1.5 s of it spans three timeouts.
    await wait_for(lambda: a.stats.packets_received >= 75)
    assert not fired.done()

    await b.close()
    closed_at = loop.time()
    fired_at = await asyncio.wait_for(fired, 5)
    assert fired_at - closed_at >= 0.45


async def test_media_timeout_uses_hold_limit(session_pair: SessionPair) -> None:
    a, _ = session_pair
    a.attach(RecordingHandler())
    a.on_hold = True
    started = asyncio.get_running_loop().time()
    fired = asyncio.get_running_loop().create_future()
    # The normal limit would fire at once; on hold only the 0.5 s hold limit applies.
    a.watch_inactivity(0.01, 0.5, lambda: fired.set_result(asyncio.get_running_loop().time()))
    fired_at = await asyncio.wait_for(fired, 5)
    assert fired_at - started >= 0.5
