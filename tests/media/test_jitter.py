"""Jitter buffer on a virtual clock: packets arrive at computed times, pops every 20 ms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from media.jitter import FrameKind, JitterBuffer, JitterConfig


@dataclass
class Run:
    kinds: list[FrameKind]
    frames: list[bytes]
    depths: list[int]
    buffer: JitterBuffer


def packet_audio(index: int, samples: int) -> bytes:
    """Loud for 1 s, quiet for 1 s (a talker with pauses); the index is the first sample."""
    loud = (index * 20 // samples // 50) % 2 == 0 if samples else True
    value = 4000 + index % 7 if loud else 0
    return np.full(samples, value, "<i2").tobytes()


def simulate(
    *,
    period_ms: float = 20.0,
    jitter_ms: float = 0.0,
    loss: float = 0.0,
    seconds: float = 60.0,
    packet_ms: int = 20,
    first_timestamp: int = 1000,
    order: str = "arrival",
    seed: int = 7,
) -> Run:
    rng = np.random.default_rng(seed)
    buffer = JitterBuffer(8000, 8000)
    packet_samples = 8 * packet_ms
    count = int(seconds * 1000 / (period_ms * packet_ms / 20))
    arrivals = []
    for index in range(count):
        if rng.random() < loss:
            continue
        sent_ms = index * period_ms * packet_ms / 20
        arrivals.append((sent_ms + abs(rng.normal(0, jitter_ms)), index))
    if order == "arrival":
        arrivals.sort()
    run = Run([], [], [], buffer)
    next_arrival = 0
    now = 0.0
    while now < seconds * 1000:
        while next_arrival < len(arrivals) and arrivals[next_arrival][0] <= now:
            arrival_ms, index = arrivals[next_arrival]
            timestamp = (first_timestamp + index * packet_samples) & 0xFFFFFFFF
            buffer.push(timestamp, packet_audio(index, packet_samples), arrival_ms)
            next_arrival += 1
        popped = buffer.pop()
        if popped is not None:
            run.frames.append(popped[0])
            run.kinds.append(popped[1])
        run.depths.append(buffer.depth_ms)
        now += 20
    return run


def test_steady_stream_plays_every_packet() -> None:
    run = simulate(seconds=10)
    stats = run.buffer.stats
    assert stats.played >= stats.received - 2  # up to 40 ms are still buffered at the end
    assert stats.concealed == 0
    assert stats.late == 0
    assert all(len(frame) == 320 for frame in run.frames)


def test_reordered_packets_played_in_order() -> None:
    buffer = JitterBuffer(8000, 8000, config=JitterConfig(min_delay_ms=60))
    for index in (0, 2, 1, 3, 5, 4):
        buffer.push(160 * index, np.full(160, 1000 + index, "<i2").tobytes(), 0)
    played = []
    for _ in range(6):
        popped = buffer.pop()
        assert popped is not None
        assert popped[1] is FrameKind.AUDIO
        played.append(int(np.frombuffer(popped[0], "<i2")[0]))
    assert played == [1000, 1001, 1002, 1003, 1004, 1005]


def test_lost_packet_concealed_with_fading_copy() -> None:
    buffer = JitterBuffer(8000, 8000, config=JitterConfig(min_delay_ms=40))
    for index in (0, 1, 3, 4):
        buffer.push(160 * index, np.full(160, 1000, "<i2").tobytes(), 0)
    results = [buffer.pop() for _ in range(4)]
    assert [r[1] for r in results if r] == [
        FrameKind.AUDIO,
        FrameKind.AUDIO,
        FrameKind.CONCEALED,
        FrameKind.AUDIO,
    ]
    concealed = results[2]
    assert concealed is not None
    assert set(np.frombuffer(concealed[0], "<i2").tolist()) == {500}
    assert buffer.stats.concealed == 1


def test_fast_sender_clock_absorbed() -> None:
    run = simulate(period_ms=19.8, jitter_ms=2)
    stats = run.buffer.stats
    assert stats.concealed == 0
    assert 20 <= stats.dropped_for_delay <= 45  # 1 % fast over 60 s is 30 frames
    # The delay stays bounded: quiet frames are dropped in each pause.
    assert max(run.depths[-500:]) <= run.buffer.target_ms + 100


def test_slow_sender_clock_absorbed() -> None:
    run = simulate(period_ms=20.2, jitter_ms=2)
    stats = run.buffer.stats
    assert stats.late == 0
    assert stats.concealed == 0
    assert 20 <= stats.underruns + stats.stretched <= 45  # 1 % slow over 60 s is 30 frames


def test_heavy_jitter_raises_target() -> None:
    run = simulate(jitter_ms=30, seconds=60)
    stats = run.buffer.stats
    assert run.buffer.target_ms > 60
    assert stats.late <= 10  # the first seconds, before the target has grown
    assert stats.played >= 0.99 * stats.received


def test_random_loss_concealed() -> None:
    run = simulate(loss=0.05, jitter_ms=5)
    stats = run.buffer.stats
    lost = 3000 - stats.received
    assert abs(stats.concealed - lost) <= 5


def test_timestamp_wraparound() -> None:
    run = simulate(seconds=5, first_timestamp=0xFFFFFFFF - 160 * 50)
    assert run.buffer.stats.concealed == 0
    assert run.buffer.stats.resyncs == 0
    assert run.buffer.stats.played >= 240


def test_packet_sizes_rechunked_to_20ms() -> None:
    for packet_ms in (10, 30, 40):
        run = simulate(seconds=3, packet_ms=packet_ms)
        assert all(len(frame) == 320 for frame in run.frames)
        assert run.buffer.stats.concealed == 0
        assert run.buffer.stats.underruns == 0, f"{packet_ms} ms packets"


def test_timestamp_jump_resynchronizes() -> None:
    buffer = JitterBuffer(8000, 8000)
    for index in range(10):
        buffer.push(160 * index, np.full(160, 1, "<i2").tobytes(), 20 * index)
    for _ in range(5):
        buffer.pop()
    for index in range(10):
        buffer.push(5_000_000 + 160 * index, np.full(160, 2, "<i2").tobytes(), 200 + 20 * index)
    assert buffer.stats.resyncs == 1
    popped = [buffer.pop() for _ in range(3)]
    assert any(p is not None and np.frombuffer(p[0], "<i2")[0] == 2 for p in popped)


def test_wideband_clock_ratio() -> None:
    # G.722: 16 kHz samples on an 8 kHz RTP clock.
    buffer = JitterBuffer(16000, 8000, config=JitterConfig(min_delay_ms=40))
    for index in range(4):
        buffer.push(160 * index, np.full(320, index, "<i2").tobytes(), 0)
    frames = [buffer.pop() for _ in range(4)]
    assert [int(np.frombuffer(f[0], "<i2")[0]) for f in frames if f] == [0, 1, 2, 3]
    assert buffer.stats.concealed == 0
