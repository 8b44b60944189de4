"""The C receive path (`media._rtpcore`) decides as the Python reference does.

The RTP header parser must accept and reject the same datagrams as
`RtpPacket.parse`, and find the same fields. The C jitter buffer must return
the same frames and counters as `PythonJitterBuffer` for the same stream of
packets and pops, and the C endpointer the same steps and states as
`PythonEndpointer` for the same frames, and the C reception statistics the
same fields and report blocks as `PythonReceptionStatistics` for the same
packets. The inputs are the mutation engine's packets (seeded, FUZZ_INPUTS of
them) and hypothesis examples (bounded by `max_examples`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media import _rtpcore
from media.jitter import NATIVE, JitterBuffer, JitterConfig, PythonJitterBuffer
from media.rtcp import NativeReceptionStatistics, PythonReceptionStatistics, ReceptionStatistics
from media.rtp import RtpPacket
from media.vad import Endpointer, PythonEndpointer, VadConfig, VadFormatError
from tests.fuzz.mutate import INPUTS, SEED, inputs
from tests.fuzz.test_parsers import RTP_CORPUS

Verdict = tuple[object, ...] | str


def python_verdict(data: bytes) -> Verdict:
    try:
        packet = RtpPacket.parse(data)
    except ValueError as exc:
        return f"ValueError: {exc}"
    extension = None
    if packet.extension is not None:
        extension = (packet.extension[0], packet.extension[1])
    return (
        packet.payload_type,
        packet.sequence_number,
        packet.timestamp,
        packet.ssrc,
        packet.marker,
        packet.csrc,
        extension,
        packet.payload,
        packet.padding_size,
    )


def c_verdict(data: bytes) -> Verdict:
    try:
        fields = _rtpcore.parse_rtp(data)
    except ValueError as exc:
        return f"ValueError: {exc}"
    payload_type, sequence, timestamp, ssrc, marker, csrc_count, extension, start, end, padding = (
        fields
    )
    csrc = tuple(int.from_bytes(data[12 + 4 * i : 16 + 4 * i], "big") for i in range(csrc_count))
    extension_fields = None
    if extension is not None:
        profile, extension_start, extension_end = extension
        extension_fields = (profile, data[extension_start:extension_end])
    return (
        payload_type,
        sequence,
        timestamp,
        ssrc,
        marker,
        csrc,
        extension_fields,
        data[start:end],
        padding,
    )


def test_native_implementations_in_use() -> None:
    assert NATIVE
    assert JitterBuffer is not PythonJitterBuffer
    assert Endpointer is not PythonEndpointer
    assert ReceptionStatistics is NativeReceptionStatistics


def test_rtp_parser_matches_python_on_mutations() -> None:
    for index, data in enumerate(inputs(RTP_CORPUS)):
        expected = python_verdict(data)
        got = c_verdict(data)
        if got != expected:
            pytest.fail(
                f"input {index} of {INPUTS} (FUZZ_SEED={SEED}): C {got!r}, Python {expected!r}"
                f"\ninput: {data!r}"
            )


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_rtp_parser_matches_python_on_random_bytes(data: bytes) -> None:
    assert c_verdict(data) == python_verdict(data)


@settings(max_examples=500)
@given(
    first=st.integers(0, 255),
    second=st.integers(0, 255),
    extension_words=st.integers(0, 0xFFFF),
    body=st.binary(max_size=120),
    last=st.integers(0, 255),
)
def test_rtp_parser_matches_python_on_headers(
    first: int, second: int, extension_words: int, body: bytes, last: int
) -> None:
    # Random flag bits and counts with bodies around the lengths they declare.
    data = bytes([first, second]) + bytes(10) + body
    if first & 0x10:
        csrc_end = 12 + 4 * (first & 0x0F)
        data = data[:csrc_end] + b"\xbe\xde" + extension_words.to_bytes(2, "big") + data[csrc_end:]
    data += bytes([last])
    assert c_verdict(data) == python_verdict(data)


@settings(max_examples=300)
@given(
    payload_type=st.integers(0, 127),
    marker=st.booleans(),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
)
def test_rtp_builder_matches_serialize(
    payload_type: int, marker: bool, sequence: int, timestamp: int, ssrc: int, payload: bytes
) -> None:
    second = payload_type | (0x80 if marker else 0)
    expected = RtpPacket(payload_type, sequence, timestamp, ssrc, payload, marker=marker)
    assert _rtpcore.build_rtp(second, sequence, timestamp, ssrc, payload) == expected.serialize()


def test_rtp_builder_rejects_out_of_range_fields() -> None:
    for fields in ((256, 0, 0, 0), (0, 0x10000, 0, 0), (0, 0, 2**32, 0), (0, 0, 0, -1)):
        with pytest.raises((ValueError, OverflowError)):
            _rtpcore.build_rtp(*fields, b"")


def test_g711_push_matches_python_on_mutations() -> None:
    seeds = [
        bytes.fromhex("80000001000000a00000002a") + bytes(range(160)),
        bytes.fromhex("80080002000001400000002a") + bytes(range(96, 256)),
        *RTP_CORPUS,
    ]
    for alaw, payload_type in ((False, 0), (True, 8)):
        native = JitterBuffer(8000, 8000)
        reference = PythonJitterBuffer(8000, 8000)
        for index, data in enumerate(inputs(seeds, count=min(INPUTS, 20_000))):
            arrival = 20.0 * index
            got = native.push_rtp_g711(data, payload_type, 42, alaw, arrival)
            expected = reference.push_rtp_g711(data, payload_type, 42, alaw, arrival)
            assert got == expected, f"input {index} (FUZZ_SEED={SEED}): {data!r}"
            if index % 3 == 0:
                assert native.pop() == reference.pop(), f"pop after input {index}"
        assert native.stats == reference.stats


def test_g711_receive_matches_python_on_mutations() -> None:
    seeds = [
        bytes.fromhex("80000001000000a00000002a") + bytes(range(160)),
        bytes.fromhex("80000002000001400000002a") + bytes(range(96, 256)),
        *RTP_CORPUS,
    ]
    native = JitterBuffer(8000, 8000)
    reference = PythonJitterBuffer(8000, 8000)
    native_reception = NativeReceptionStatistics(8000)
    reference_reception = PythonReceptionStatistics(8000)
    for index, data in enumerate(inputs(seeds, count=min(INPUTS, 20_000))):
        arrival_ms = 20.0 * index
        arrival_s = 1.7e9 + index / 50
        got = native.receive_rtp_g711(data, 0, 42, False, arrival_ms, native_reception, arrival_s)
        expected = reference.receive_rtp_g711(
            data, 0, 42, False, arrival_ms, reference_reception, arrival_s
        )
        assert got == expected, f"input {index} (FUZZ_SEED={SEED}): {data!r}"
        fields = reception_fields(native_reception)
        assert fields == reception_fields(reference_reception), f"input {index}: {data!r}"
        if index % 3 == 0:
            assert native.pop() == reference.pop(), f"pop after input {index}"
    assert native.stats == reference.stats
    assert native_reception.received > 0


def test_g711_receive_reads_wall_clock() -> None:
    native = JitterBuffer(8000, 8000)
    reception = NativeReceptionStatistics(8000)
    before = time.time()
    packet = bytes.fromhex("80000001000000a00000002a") + bytes(160)
    assert native.receive_rtp_g711(packet, 0, 42, False, 0.0, reception)
    after = time.time()
    assert reception.last_transit is not None
    arrival_s = (reception.last_transit + 160) / 8000
    assert before - 0.001 <= arrival_s <= after + 0.001
    assert not native.receive_rtp_g711(packet, 8, 42, False, 0.0, reception)
    assert not native.receive_rtp_g711(packet, 0, None, False, 0.0, reception)
    assert reception.received == 1


def test_g711_receive_rejects_bad_arguments() -> None:
    native = JitterBuffer(8000, 8000)
    packet = bytes.fromhex("80000001000000a00000002a") + bytes(160)
    with pytest.raises(TypeError):
        native.receive_rtp_g711(packet, 0, 42, False, 0.0, PythonReceptionStatistics(8000))
    with pytest.raises(TypeError):
        reception = NativeReceptionStatistics(8000)
        native.receive_rtp_g711(bytearray(packet), 0, 42, False, 0.0, reception)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        native.receive_rtp_g711(packet, 0, 42, False, 0.0)  # type: ignore[call-arg]
    assert native.stats.received == 0


@dataclass(frozen=True)
class Push:
    timestamp_step: int
    samples: int
    arrival_jitter_ms: float
    level: int


@dataclass(frozen=True)
class Pop:
    pass


_operations = st.one_of(
    st.builds(
        Push,
        timestamp_step=st.sampled_from([160, 160, 160, 80, 240, 320, 0, -160, -480, 9000, 2**31]),
        samples=st.sampled_from([160, 160, 80, 240, 320, 1, 0, 7]),
        arrival_jitter_ms=st.floats(-5, 60, allow_nan=False),
        level=st.sampled_from([0, 100, 400, 8000, 32767]),
    ),
    st.just(Pop()),
    st.just(Pop()),
)


@settings(max_examples=400, deadline=None)
@given(
    operations=st.lists(_operations, max_size=120),
    sample_rate=st.sampled_from([8000, 16000]),
    min_delay_ms=st.sampled_from([0, 20, 40, 60]),
    max_delay_ms=st.sampled_from([40, 100, 300]),
    max_conceal_frames=st.sampled_from([0, 2, 5]),
    drop_window_frames=st.sampled_from([1, 5, 50]),
    max_packets=st.sampled_from([1, 3, 200]),
    start_timestamp=st.integers(0, 2**32 - 1),
)
def test_jitter_buffer_matches_python(
    operations: list[Push | Pop],
    sample_rate: int,
    min_delay_ms: int,
    max_delay_ms: int,
    max_conceal_frames: int,
    drop_window_frames: int,
    max_packets: int,
    start_timestamp: int,
) -> None:
    config = JitterConfig(
        min_delay_ms=min_delay_ms,
        max_delay_ms=max_delay_ms,
        max_conceal_frames=max_conceal_frames,
        drop_window_frames=drop_window_frames,
        max_packets=max_packets,
        resync_ms=200,
    )
    native = JitterBuffer(sample_rate, 8000, config=config)
    reference = PythonJitterBuffer(sample_rate, 8000, config=config)
    rng = np.random.default_rng(len(operations))
    timestamp = start_timestamp
    clock_ms = 0.0
    for step, operation in enumerate(operations):
        if isinstance(operation, Pop):
            clock_ms += 20
            assert native.pop() == reference.pop(), f"step {step}"
        else:
            timestamp = (timestamp + operation.timestamp_step) % 2**32
            samples = rng.integers(
                -operation.level, operation.level + 1, operation.samples, dtype=np.int16
            )
            arrival = clock_ms + operation.arrival_jitter_ms
            native.push_samples(timestamp, samples, arrival)
            reference.push_samples(timestamp, samples, arrival)
        assert native.depth_ms == reference.depth_ms, f"step {step}"
        assert native.target_ms == reference.target_ms, f"step {step}"
    assert native.stats == reference.stats


def test_jitter_buffer_matches_python_on_a_lossy_stream() -> None:
    # A longer stream than hypothesis builds: loss, reordering, duplicates and
    # a sender clock that runs fast, so the drop and stretch paths run too.
    rng = random.Random(SEED)
    native = JitterBuffer(8000, 8000)
    reference = PythonJitterBuffer(8000, 8000)
    tone = (8000 * np.sin(np.arange(160) / 3)).astype(np.int16).tobytes()
    quiet = bytes(320)
    pending: list[tuple[int, bytes]] = []
    for tick in range(3000):
        pcm = tone if (tick // 40) % 2 else quiet
        step = 161 if 1000 <= tick < 2000 else 160
        pending.append(((tick * step) % 2**32, pcm))
        rng.shuffle(pending)
        while pending and rng.random() < 0.8:
            timestamp, payload = pending.pop()
            if rng.random() < 0.03:
                continue
            for _ in range(2 if rng.random() < 0.02 else 1):
                arrival = 20 * tick + rng.uniform(0, 40)
                native.push(timestamp, payload, arrival)
                reference.push(timestamp, payload, arrival)
        assert native.pop() == reference.pop(), f"tick {tick}"
    assert native.stats == reference.stats
    assert reference.stats.dropped_for_delay > 0
    assert reference.stats.concealed > 0


def test_jitter_buffer_rejects_wrong_sample_type() -> None:
    native = JitterBuffer(8000, 8000)
    with pytest.raises(TypeError):
        native.push_samples(0, np.zeros(160, dtype=np.int32), 0.0)
    with pytest.raises(ValueError):
        native.push(0, b"\x00" * 3, 0.0)


def _endpointer_config(
    start_ms: int, start_gap_ms: int, stop_ms: int, preroll_ms: int, max_utterance_ms: int
) -> VadConfig:
    return VadConfig(
        start_ms=start_ms,
        start_gap_ms=start_gap_ms,
        stop_ms=stop_ms,
        preroll_ms=preroll_ms,
        max_utterance_ms=max_utterance_ms,
    )


def _assert_same_endpointers(native: Endpointer, reference: PythonEndpointer, step: int) -> None:
    assert native.state is reference.state, f"step {step}"
    assert native.now_ms == reference.now_ms, f"step {step}"
    assert native.voiced_ms == reference.voiced_ms, f"step {step}"
    assert native.utterance_start_ms == reference.utterance_start_ms, f"step {step}"


@settings(max_examples=300, deadline=None)
@given(
    decisions=st.lists(st.booleans(), max_size=300),
    start_ms=st.sampled_from([0, 20, 60, 120]),
    start_gap_ms=st.sampled_from([0, 20, 60]),
    stop_ms=st.sampled_from([0, 20, 100, 300]),
    preroll_ms=st.sampled_from([0, 20, 300]),
    max_utterance_ms=st.sampled_from([0, 100, 1000, 20_000]),
    stop_change=st.integers(0, 300),
)
def test_endpointer_steps_match_python(
    decisions: list[bool],
    start_ms: int,
    start_gap_ms: int,
    stop_ms: int,
    preroll_ms: int,
    max_utterance_ms: int,
    stop_change: int,
) -> None:
    config = _endpointer_config(start_ms, start_gap_ms, stop_ms, preroll_ms, max_utterance_ms)
    native = Endpointer(config, 8000)
    reference = PythonEndpointer(config, 8000)
    for index, speech in enumerate(decisions):
        if index == stop_change:
            native.set_stop_ms(200)
            reference.set_stop_ms(200)
        frame = index.to_bytes(4, "big") * 80
        assert native.step(frame, speech) == reference.step(frame, speech), f"step {index}"
        _assert_same_endpointers(native, reference, index)


_speech_like = (8000 * np.sin(np.arange(4000) * 2 * np.pi * 300 / 8000)).astype(np.int16)


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(
        st.tuples(
            st.sampled_from([320, 320, 320, 160, 480, 2, 1000]),
            st.sampled_from([0, 10, 300, 3000, 16000]),
            st.booleans(),
        ),
        max_size=80,
    ),
    gate=st.sampled_from([None, -55.0, -20.0]),
    mode=st.integers(0, 3),
)
def test_endpointer_feed_matches_python(
    chunks: list[tuple[int, int, bool]], gate: float | None, mode: int
) -> None:
    config = VadConfig(mode=mode, energy_gate_dbfs=gate, start_ms=40, stop_ms=100)
    native = Endpointer(config, 8000)
    reference = PythonEndpointer(config, 8000)
    rng = np.random.default_rng(len(chunks))
    offset = 0
    for index, (size, level, pass_energy) in enumerate(chunks):
        samples = _speech_like[np.arange(offset, offset + size // 2) % _speech_like.size]
        noise = rng.integers(-level - 1, level + 1, size // 2)
        pcm = np.clip(samples * (level / 16000) + noise, -32768, 32767).astype("<i2").tobytes()
        offset += size // 2
        values = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        energy = float(values @ values) if pass_energy else None
        got = native.feed(pcm, 8000, energy=energy)
        expected = reference.feed(pcm, 8000, energy=energy)
        assert got == expected, f"chunk {index}"
        _assert_same_endpointers(native, reference, index)


def test_endpointer_feed_rejects_bad_format_as_python() -> None:
    native = Endpointer(VadConfig(), 8000)
    with pytest.raises(VadFormatError):
        native.feed(bytes(320), 16000)
    with pytest.raises(VadFormatError):
        native.feed(bytes(3), 8000)
    with pytest.raises(VadFormatError):
        native.feed(bytes(320), 8000, 0)


ReceptionStep = tuple[int, int, int, float] | float


def reception_fields(
    stats: PythonReceptionStatistics | NativeReceptionStatistics,
) -> tuple[object, ...]:
    return (
        stats.ssrc,
        stats.base_sequence,
        stats.max_sequence,
        stats.cycles,
        stats.received,
        stats.expected_prior,
        stats.received_prior,
        stats.jitter,
        stats.last_transit,
        stats.extended_max,
        stats.expected,
        stats.cumulative_lost,
    )


def compare_reception(steps: list[ReceptionStep], clock_rate: int = 8000) -> None:
    """Feed both classes the steps: an update tuple, or a float time for a report block."""
    native = NativeReceptionStatistics(clock_rate)
    reference = PythonReceptionStatistics(clock_rate)
    for index, step in enumerate(steps):
        if isinstance(step, tuple):
            native.update(*step)
            reference.update(*step)
        else:
            native.note_sender_report(index << 32, step - 0.5)
            reference.note_sender_report(index << 32, step - 0.5)
            assert native.report_block(step) == reference.report_block(step), f"step {index}"
        assert reception_fields(native) == reception_fields(reference), f"step {index}: {step!r}"


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.sampled_from([0, 7, 0xFFFFFFFF]),
                st.integers(0, 0xFFFF),
                st.integers(0, 0xFFFFFFFF),
                st.floats(0.0, 2e9, allow_nan=False),
            ),
            st.floats(0.0, 2e9, allow_nan=False),
        ),
        max_size=60,
    ),
    st.sampled_from([8000, 16000, 48000, 90000]),
)
def test_reception_statistics_match_python(steps: list[ReceptionStep], clock_rate: int) -> None:
    compare_reception(steps, clock_rate)


def test_reception_statistics_match_python_on_mutations() -> None:
    steps: list[ReceptionStep] = []
    for index, data in enumerate(inputs(RTP_CORPUS, count=min(INPUTS, 20_000))):
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            continue
        arrival = 0.02 * index
        steps.append((packet.ssrc, packet.sequence_number, packet.timestamp, arrival))
        if index % 50 == 0:
            steps.append(arrival)
    assert steps, f"no valid RTP packet among the mutations (FUZZ_SEED={SEED})"
    compare_reception(steps)


def test_reception_core_rejects_out_of_range_fields() -> None:
    stats = NativeReceptionStatistics(8000)
    for fields in ((-1, 0, 0), (2**32, 0, 0), (0, 0x10000, 0), (0, -1, 0), (0, 0, 2**32)):
        with pytest.raises((ValueError, OverflowError)):
            stats.update(*fields, 0.0)
    with pytest.raises(TypeError):
        stats.update(0, 0, 0, "now")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        stats.update(0, 0)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        NativeReceptionStatistics(0)
    assert stats.received == 0
    assert stats.ssrc is None
