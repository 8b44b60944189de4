from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from media.audio import PcmAudio
from media.leg import MediaLeg
from media.memory import MemoryTransport
from media.mixer import Mixer, Role, SupervisorMode, bridge
from media.rtp_session import RtpPortPool, RtpSession, RtpSessionConfig
from media.sources import LoopingSource
from tests.media.conftest import LOOPBACK, RecordingHandler, rms, tone_pcm, wait_for

TONES = {Role.CALLER: 400.0, Role.AGENT: 700.0, Role.SUPERVISOR: 1100.0}


def tone_level(pcm: bytes, rate: int, hz: float) -> float:
    """Return the amplitude of the `hz` component of s16le `pcm` (0 for silence)."""
    samples = np.frombuffer(pcm, "<i2").astype(float)
    if samples.size == 0:
        return 0.0
    t = np.arange(samples.size) / rate
    component = samples @ np.exp(-2j * np.pi * hz * t)
    return float(2 * abs(component) / samples.size)


def dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, "<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


def tone_frames(hz: float, count: int) -> list[PcmAudio]:
    """Return a continuous tone cut into 20 ms frames at 8 kHz."""
    pcm = tone_pcm(8000, count * 0.02, hz=hz)
    return [PcmAudio(pcm[i : i + 320], 8000) for i in range(0, len(pcm), 320)]


async def open_pair(pool: RtpPortPool, name: str) -> tuple[RtpSession, RtpSession]:
    """Return (phone, server) RTP sessions talking to each other."""
    config = RtpSessionConfig()
    phone = await RtpSession.open_from_pool(pool, config, local_host=LOOPBACK, call_id=name)
    server = await RtpSession.open_from_pool(
        pool, config, local_host=LOOPBACK, remote=phone.local_address, call_id=name
    )
    phone.set_remote(server.local_address)
    return phone, server


async def test_bridge_carries_tone_both_ways(port_pool: RtpPortPool) -> None:
    caller_phone, caller_server = await open_pair(port_pool, "caller")
    agent_phone, agent_server = await open_pair(port_pool, "agent")
    try:
        caller_leg = MediaLeg(caller_server, call_id="caller")
        agent_leg = MediaLeg(agent_server, call_id="agent")
        mixer = bridge(caller_leg, agent_leg)

        caller_audio = RecordingHandler()
        agent_audio = RecordingHandler()
        caller_audio.outbound = tone_frames(440, 50)
        agent_audio.outbound = tone_frames(1000, 50)
        caller_phone.attach(caller_audio)
        agent_phone.attach(agent_audio)

        def loud(frames: list[PcmAudio]) -> list[PcmAudio]:
            return [f for f in frames if rms(f.pcm) > 2000]

        await wait_for(lambda: len(loud(agent_audio.frames)) >= 30)
        await wait_for(lambda: len(loud(caller_audio.frames)) >= 30)
        heard_by_agent = b"".join(f.pcm for f in loud(agent_audio.frames))
        heard_by_caller = b"".join(f.pcm for f in loud(caller_audio.frames))
        assert abs(dominant_hz(heard_by_agent, 8000) - 440) < 10
        assert abs(dominant_hz(heard_by_caller, 8000) - 1000) < 10

        mixer.close()
        count = len(agent_audio.frames)
        caller_audio.outbound = tone_frames(440, 25)
        await wait_for(lambda: len(agent_audio.frames) >= count + 40)
        assert loud(agent_audio.frames[count + 10 :]) == []
    finally:
        for session in (caller_phone, caller_server, agent_phone, agent_server):
            await session.close()


def conference(
    rate_by_role: dict[Role, int] | None = None,
) -> tuple[Mixer, dict[Role, MemoryTransport]]:
    rates = rate_by_role or {}
    mixer = Mixer(call_id="conf")
    transports = {}
    for role in Role:
        transport = MemoryTransport(rates.get(role, 8000))
        mixer.add(MediaLeg(transport, call_id=role.value), role)
        transports[role] = transport
    return mixer, transports


def run_conference(transports: dict[Role, MemoryTransport], frames: int = 25) -> dict[Role, bytes]:
    for role, transport in transports.items():
        transport.push(tone_pcm(transport.sample_rate, frames * 0.02, hz=TONES[role]))
    heard: dict[Role, list[bytes]] = {role: [] for role in transports}
    for _ in range(frames):
        for role, transport in transports.items():
            frame = transport.tick()
            heard[role].append(frame.pcm if frame is not None else b"")
    return {role: b"".join(chunks[5:]) for role, chunks in heard.items()}


@pytest.mark.parametrize(
    ("mode", "caller_hears_supervisor", "agent_hears_supervisor"),
    [
        (SupervisorMode.LISTEN, False, False),
        (SupervisorMode.WHISPER, False, True),
        (SupervisorMode.BARGE, True, True),
    ],
)
def test_supervisor_modes(
    mode: SupervisorMode, caller_hears_supervisor: bool, agent_hears_supervisor: bool
) -> None:
    mixer, transports = conference()
    mixer.set_supervisor_mode(mode)
    heard = run_conference(transports)

    def hears(listener: Role, speaker: Role) -> bool:
        return tone_level(heard[listener], 8000, TONES[speaker]) > 1000

    assert hears(Role.CALLER, Role.AGENT)
    assert hears(Role.AGENT, Role.CALLER)
    assert hears(Role.SUPERVISOR, Role.CALLER)
    assert hears(Role.SUPERVISOR, Role.AGENT)
    assert hears(Role.CALLER, Role.SUPERVISOR) is caller_hears_supervisor
    assert hears(Role.AGENT, Role.SUPERVISOR) is agent_hears_supervisor
    for role in Role:
        assert not hears(role, role)


def test_mixed_rates_resampled_for_listener() -> None:
    _, transports = conference({Role.AGENT: 16000})
    heard = run_conference(transports)
    assert len(heard[Role.AGENT]) == 20 * 640
    assert tone_level(heard[Role.AGENT], 16000, TONES[Role.CALLER]) > 1000
    assert tone_level(heard[Role.CALLER], 8000, TONES[Role.AGENT]) > 1000


def test_recording_is_stereo_and_silent_when_paused(tmp_path: Path) -> None:
    mixer, transports = conference()
    path = tmp_path / "call.wav"
    mixer.start_recording(path)
    run_conference(transports, frames=50)
    mixer.pause_recording()
    run_conference(transports, frames=25)
    mixer.resume_recording()
    run_conference(transports, frames=25)
    assert mixer.stop_recording() == path

    with wave.open(str(path)) as recording:
        assert recording.getnchannels() == 2
        assert recording.getframerate() == 8000
        frames = recording.getnframes()
        data = recording.readframes(frames)
    assert frames == 100 * 160
    stereo = np.frombuffer(data, "<i2").reshape(-1, 2)
    paused = stereo[50 * 160 : 75 * 160]
    assert not paused.any()
    spoken = np.concatenate([stereo[: 50 * 160], stereo[75 * 160 :]])
    left = spoken[:, 0].astype("<i2").tobytes()
    right = spoken[:, 1].astype("<i2").tobytes()
    assert abs(dominant_hz(left, 8000) - TONES[Role.CALLER]) < 10
    assert abs(dominant_hz(right, 8000) - TONES[Role.AGENT]) < 10
    assert tone_level(left, 8000, TONES[Role.AGENT]) < 100


async def test_hold_music_loops_and_yields_to_prompts() -> None:
    transport = MemoryTransport(8000)
    leg = MediaLeg(transport, call_id="held")
    music = PcmAudio(tone_pcm(8000, 0.1, hz=500), 8000)
    leg.set_outbound_source(LoopingSource(music, 8000))
    frames = [transport.tick() for _ in range(12)]
    assert all(f is not None and rms(f.pcm) > 1000 for f in frames)
    assert frames[0] == frames[5] == frames[10]

    prompt = PcmAudio(tone_pcm(8000, 0.06, hz=900), 8000)
    playing = asyncio.create_task(leg.play(prompt))
    await asyncio.sleep(0)
    during = [transport.tick() for _ in range(3)]
    assert await playing is None
    after = transport.tick()
    assert all(f is not None and abs(dominant_hz(f.pcm, 8000) - 900) < 60 for f in during)
    assert after is not None
    assert abs(dominant_hz(after.pcm, 8000) - 500) < 60


async def test_empty_prompt_returns_at_once() -> None:
    transport = MemoryTransport(8000)
    leg = MediaLeg(transport, call_id="empty")
    assert await asyncio.wait_for(leg.play(PcmAudio(b"", 22050)), 1) is None
    assert transport.tick() is None
