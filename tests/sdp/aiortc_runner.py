"""Feed SDP offers to a real aiortc peer and report what it made of each.

Run by test_aiortc.py inside a network namespace that has only loopback,
because aiortc resolves the offer's mDNS candidates as soon as it reads them.
Reads a JSON list of offer texts on stdin and writes one JSON result per
offer on stdout: the prepare_webrtc_offer error, if any, and the outcome of
aiortc on the raw offer and on the prepared one.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from signaling.sdp import SdpError, complete_webrtc_answer, parse, prepare_webrtc_offer

TIMEOUT_SECONDS = 20.0


async def answer_with_aiortc(offer_text: str) -> tuple[str | None, str | None]:
    """Answer `offer_text` with an audio track, as the WebRTC leg does.

    Returns (answer, None) on success and (None, error) when aiortc raises.
    """
    peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answer: str | None = None
    error: str | None = None
    try:
        await asyncio.wait_for(
            peer.setRemoteDescription(RTCSessionDescription(sdp=offer_text, type="offer")),
            TIMEOUT_SECONDS,
        )
        peer.addTrack(AudioStreamTrack())
        created = await asyncio.wait_for(peer.createAnswer(), TIMEOUT_SECONDS)
        await asyncio.wait_for(peer.setLocalDescription(created), TIMEOUT_SECONDS)
        answer = peer.localDescription.sdp
    except Exception as exc:  # recording every aiortc failure is the point
        error = f"{type(exc).__name__}: {exc}"
    try:
        await peer.close()
    except Exception as exc:  # aiortc 1.16 can fail in close() after a bundled data channel
        error = error or f"close: {type(exc).__name__}: {exc}"
        answer = None
    return answer, error


async def examine(offer_text: str) -> dict[str, Any]:
    result: dict[str, Any] = {"prepare_error": None, "prepared_error": None, "completed": None}
    _raw_answer, result["raw_error"] = await answer_with_aiortc(offer_text)
    try:
        offer = parse(offer_text)
        prepared = prepare_webrtc_offer(offer)
    except SdpError as exc:
        result["prepare_error"] = str(exc)
        return result
    answer, result["prepared_error"] = await answer_with_aiortc(prepared.sdp)
    if answer is not None:
        try:
            result["completed"] = complete_webrtc_answer(answer, offer)
        except SdpError as exc:
            result["prepared_error"] = f"complete_webrtc_answer: {exc}"
    return result


async def main() -> None:
    offers = json.load(sys.stdin)
    results = [await examine(text) for text in offers]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
