"""End-of-speech to first reply packet: how long a caller waits after speaking.

A client on 127.0.0.1 sends PCMU RTP of an espeak-ng Korean word followed by
silence. The server is one RtpSession and MediaLeg with grammar-mode Vosk
recognition; a small responder plays a 600 Hz reply as soon as a final
result arrives (as the IVR engine would start its next prompt). The client
timestamps the last packet carrying speech and the first reply packet with
energy, and the script prints p50/p95/max of the difference.

The figure includes, by design, the endpointer's stop time (`--stop-ms`,
silence needed before an utterance counts as ended), the jitter buffer
delay, the final Vosk decode and one packet interval. Bounded by `--trials`
(max 200) and 10 s per trial.

Usage: PYTHONPATH=. python bench/eos_latency.py [--trials N] [--stop-ms MS] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import uvloop

from ivr.channel import RecognizerConfig, SpeechInput
from media import g711
from media.asr import AsrConfig, ModelCatalog
from media.audio import PcmAudio
from media.leg import LegConfig, MediaLeg
from media.resample import resample
from media.rtp import RtpPacket
from media.rtp_session import RtpPortPool, RtpSession, RtpSessionConfig
from media.tts import EspeakSynthesizer
from media.vad import VadConfig

HOST = "127.0.0.1"
MENU = ["네", "아니요", "상담원", "환불", "요금"]
TRIAL_TIMEOUT_S = 10.0
MAX_TRIALS = 200


class Client(asyncio.DatagramProtocol):
    """Sends paced PCMU packets and timestamps the first loud reply packet."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.reply_at: float | None = None
        self.waiting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if not self.waiting or len(data) < 12 or data[1] & 0x7F != 0:
            return
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            return
        samples = np.frombuffer(g711.ulaw_decode(packet.payload), "<i2").astype(float)
        if samples.size and np.sqrt(np.mean(samples * samples)) > 1000:
            self.reply_at = asyncio.get_running_loop().time()
            self.waiting = False


async def responder(leg: MediaLeg, reply: PcmAudio) -> None:
    """Play `reply` after every final speech result, like an IVR's next prompt."""
    while True:
        item = await leg.next_input(60)
        if isinstance(item, SpeechInput) and item.is_final:
            await leg.play(reply)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    synthesizer = EspeakSynthesizer()
    words = [resample(synthesizer.synthesize_blocking(w, "ko"), 8000).pcm for w in MENU]
    t = np.arange(4000) / 8000
    reply = PcmAudio((8000 * np.sin(2 * np.pi * 600 * t)).astype("<i2").tobytes(), 8000)

    catalog = ModelCatalog(AsrConfig(models_dir=None))
    await catalog.preload(["ko"])
    pool = RtpPortPool(43000, 43100)
    session = await RtpSession.open_from_pool(
        pool, RtpSessionConfig(), local_host=HOST, call_id="eos"
    )
    config = LegConfig(vad=VadConfig(stop_ms=args.stop_ms))
    leg = MediaLeg(session, call_id="eos", config=config, models=catalog)
    leg.listen(RecognizerConfig("ko-KR", MENU))
    responding = asyncio.create_task(responder(leg, reply))
    transport, client = await loop.create_datagram_endpoint(
        Client, local_addr=(HOST, 0), remote_addr=session.local_address
    )

    latencies: list[float] = []
    sequence = 0
    try:
        for trial in range(args.trials):
            speech = words[trial % len(words)]
            pcm = bytes(8000) + speech + bytes(-len(speech) % 320)
            payloads = [g711.ulaw_encode(pcm[i : i + 320]) for i in range(0, len(pcm), 320)]
            silence = g711.ulaw_encode(bytes(320))
            start = loop.time()
            tick = 0
            end_of_speech: float | None = None
            client.reply_at = None
            while loop.time() - start < TRIAL_TIMEOUT_S:
                payload = payloads[tick] if tick < len(payloads) else silence
                packet = RtpPacket(0, sequence & 0xFFFF, (160 * sequence) & 0xFFFFFFFF, 7, payload)
                transport.sendto(packet.serialize())
                sequence += 1
                tick += 1
                if tick == len(payloads):
                    end_of_speech = loop.time()
                    client.waiting = True
                if client.reply_at is not None:
                    break
                delay = start + tick * 0.02 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if client.reply_at is not None and end_of_speech is not None:
                latencies.append(1000 * (client.reply_at - end_of_speech))
            client.waiting = False
            await asyncio.sleep(1.0)  # let the reply finish before the next word
    finally:
        responding.cancel()
        transport.close()
        await leg.close()

    result: dict[str, Any] = {
        "trials": args.trials,
        "answered": len(latencies),
        "stop_ms": args.stop_ms,
        "python": platform.python_version(),
    }
    if latencies:
        ordered = sorted(latencies)
        result["p50_ms"] = statistics.median(ordered)
        result["p95_ms"] = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        result["max_ms"] = ordered[-1]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="utterances to time (max 200)")
    parser.add_argument(
        "--stop-ms", type=int, default=600, help="endpointer silence before an utterance ends, ms"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    if not 1 <= args.trials <= MAX_TRIALS:
        parser.error(f"--trials must be 1-{MAX_TRIALS}")
    result = uvloop.run(run(args))
    print(f"answered {result['answered']} of {result['trials']} (stop_ms {result['stop_ms']})")
    if result["answered"]:
        print(
            f"end of speech -> first reply packet: p50 {result['p50_ms']:.0f} ms,"
            f" p95 {result['p95_ms']:.0f} ms, max {result['max_ms']:.0f} ms"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
