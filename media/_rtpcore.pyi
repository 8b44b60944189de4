from typing import Any

def parse_rtp(
    data: bytes,
) -> tuple[int, int, int, int, bool, int, tuple[int, int, int] | None, int, int, int]: ...
def build_rtp(
    second: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, /
) -> bytes: ...
def configure(audio: Any, concealed: Any, underrun: Any, stats: Any, /) -> None: ...

class JitterCore:
    def __init__(self, sample_rate: int, clock_rate: int, frame_ms: int, config: Any) -> None: ...

class EndpointCore:
    def __init__(
        self,
        classify: Any,
        sample_rate: int,
        frame_bytes: int,
        frame_ms: int,
        start_ms: int,
        start_gap_ms: int,
        stop_ms: int,
        preroll_frames: int,
        max_utterance_ms: int,
        energy_gate_dbfs: float | None,
    ) -> None: ...

def configure_endpointer(*members: Any) -> None: ...

class ReceptionCore:
    clock_rate: int
    base_sequence: int
    max_sequence: int
    cycles: int
    received: int
    expected_prior: int
    received_prior: int
    jitter: float
    def __init__(self, clock_rate: int) -> None: ...
    @property
    def ssrc(self) -> int | None: ...
    @property
    def last_transit(self) -> float | None: ...
    def update(self, ssrc: int, sequence: int, timestamp: int, arrival_s: float, /) -> None: ...

class InbandCore:
    def __init__(
        self,
        block: int,
        block_ms: int,
        min_energy: float,
        min_level_dbfs: float,
        max_forward_twist_db: float,
        max_reverse_twist_db: float,
        min_group_margin_db: float,
        min_tone_energy_fraction: float,
        max_harmonic_ratio_db: float,
        min_duration_ms: int,
        tone_cos: Any,
        tone_sin: Any,
        harmonic_cos: Any,
        harmonic_sin: Any,
        digit_type: Any,
    ) -> None: ...
    def classify(
        self, pcm: bytes, energy: float | None = None, tone_powers: Any = None
    ) -> str | None: ...
    def process(
        self, pcm: bytes, energy: float | None = None, tone_powers: Any = None
    ) -> list[Any]: ...
    @property
    def tone_present(self) -> bool: ...

class LegCore:
    enabled: bool
    in_utterance: bool
    audio_to_leg: bool
    barge_in_armed: bool
    sink: list[bytes] | None
    def __init__(
        self,
        leg: Any,
        inband: InbandCore | None,
        endpointer: EndpointCore,
        frame_bytes: int,
        sink_limit: int,
        barge_in_min_ms: int,
    ) -> None: ...
    def frame(self, pcm: bytes, features: Any, /) -> None: ...

class SessionCore:
    ssrc: int
    sequence: int
    timestamp: int
    timestamp_step: int
    payload_type: int
    max_lag_ms: int
    frame_ms: int
    stats: Any
    silence: bytes | None
    marker_next: bool
    octets_sent: int
    skip_through_tick: int
    next_rtcp_s: float
    next_activity_tick: int
    watching: bool
    python_due: bool
    receive_due: bool
    closed: bool
    transport: Any
    remote: Any
    idle_handler: Any
    jitter: Any
    frame_receiver: Any
    reception: Any
    loop_time: Any
    session_ref: Any
    latched: bool
    g711_alaw: bool | None
    audio_ssrc: int | None
    def __init__(
        self,
        ssrc: int,
        sequence: int,
        timestamp: int,
        timestamp_step: int,
        payload_type: int,
        max_lag_ms: int,
        frame_ms: int,
        stats: Any,
        silence: bytes | None,
    ) -> None: ...
    def send(self, payload_type: int, payload: bytes, timestamp: int, marker: bool, /) -> None: ...
    def send_idle(self) -> None: ...
    def clock_send(self, session: Any, tick: int, lag_s: float, /) -> None: ...
    def clock_receive(self, session: Any, /) -> None: ...
    def datagram_received(self, data: bytes, addr: Any, /) -> None: ...

def run_clock_tick(
    entries: tuple[tuple[Any, Any], ...], tick: int, lag_s: float, report: Any, /
) -> None: ...
