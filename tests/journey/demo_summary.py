"""Measurements and checks of the `make demo` summary, without I/O.

`scripts/demo.py` collects the raw material (CDRs, the node's events, the
agent page's context of each offer, RTP captured on `lo`) and these pure
functions turn it into the summary fields:

- `check_priority` compares the order in which the agent was offered the
  callers with the order the ACD promises: by join time minus the credit of
  each caller's priority (`JumpSettings.credit_s`).
- `end_of_speech_latency` measures, from captured RTP, the time from the end
  of a caller's recognized word to the first voiced packet of the reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from acd.model import JumpSettings
from tests.support.audio_analysis import (
    PAYLOAD_TYPE_PCMA,
    PAYLOAD_TYPE_PCMU,
    RtpPacket,
    dbfs,
    decode_g711,
)

VOICED_DBFS = -40.0
# Pauses inside one spoken word are shorter than this; the demo's words are
# at least 2 s apart.
WORD_GAP_S = 0.3


@dataclass(frozen=True, slots=True)
class QueuedCaller:
    """One caller as the ACD saw it: name, Unix time of joining, priority."""

    name: str
    joined_at: float
    priority: int


def promised_order(callers: Sequence[QueuedCaller], jump: JumpSettings) -> list[str]:
    """Return the callers' names in the order the ACD places them across queues.

    NOTE: this ignores the pass limit (`max_passes`) and queue weights, which
    the demo leaves at values that do not change the order of five callers.
    """
    ranked = sorted(callers, key=lambda c: c.joined_at - jump.credit_s(c.priority))
    return [caller.name for caller in ranked]


def check_priority(
    callers: Sequence[QueuedCaller], served: Sequence[str], jump: JumpSettings
) -> dict[str, Any]:
    """Check that callers were served in the promised order and every jump stayed in bounds.

    A jump is a caller served before someone who joined earlier. It is within
    bounds when the caller has the higher priority and joined at most the
    difference of the two priority credits later.
    """
    by_name = {caller.name: caller for caller in callers}
    jumps: list[dict[str, Any]] = []
    for position, name in enumerate(served):
        caller = by_name[name]
        for later_name in served[position + 1 :]:
            passed = by_name[later_name]
            if passed.joined_at >= caller.joined_at:
                continue
            bound_s = jump.credit_s(caller.priority) - jump.credit_s(passed.priority)
            jumped_s = caller.joined_at - passed.joined_at
            jumps.append(
                {
                    "caller": name,
                    "priority": caller.priority,
                    "served_before": later_name,
                    "their_priority": passed.priority,
                    "joined_later_s": round(jumped_s, 2),
                    "bound_s": bound_s,
                    "within_bound": caller.priority > passed.priority and jumped_s <= bound_s,
                }
            )
    # One line per caller that went ahead of earlier callers, for a reader.
    jumpers: dict[str, dict[str, Any]] = {}
    for entry in jumps:
        jumper = jumpers.setdefault(
            entry["caller"],
            {"priority": entry["priority"], "served_before_earlier": [], "within_bound": True},
        )
        jumper["served_before_earlier"].append(entry["served_before"])
        jumper["within_bound"] = jumper["within_bound"] and entry["within_bound"]
    expected = promised_order(callers, jump)
    in_order = list(served) == expected
    return {
        "promised_order": expected,
        "served_order": list(served),
        "priority_callers": jumpers,
        "jumps": jumps,
        "ok": in_order and bool(jumps) and all(j["within_bound"] for j in jumps),
    }


def _voiced_times(packets: Sequence[RtpPacket], wall_offset_s: float) -> list[float]:
    """Return the Unix arrival times of the G.711 packets at or above `VOICED_DBFS`."""
    times = []
    for packet in packets:
        if packet.payload_type not in (PAYLOAD_TYPE_PCMU, PAYLOAD_TYPE_PCMA):
            continue
        samples = decode_g711(packet.payload, packet.payload_type).astype(np.float64)
        if len(samples) and dbfs(float(np.sqrt(np.mean(samples**2)))) >= VOICED_DBFS:
            times.append(packet.arrival + wall_offset_s)
    return times


def speech_ends(voiced: Sequence[float]) -> list[float]:
    """Return the end time of each word: the last voiced packet before a gap of `WORD_GAP_S`."""
    ends = []
    for index, moment in enumerate(voiced):
        following = voiced[index + 1] if index + 1 < len(voiced) else None
        if following is None or following - moment > WORD_GAP_S:
            ends.append(moment)
    return ends


def end_of_speech_latency(
    sent: Sequence[RtpPacket],
    received: Sequence[RtpPacket],
    input_at: float,
    wall_offset_s: float,
) -> dict[str, float] | None:
    """Measure end of speech -> first voiced RTP packet of the reply, on captured packets.

    `sent` are the caller's packets and `received` the node's, with
    `time.monotonic()` capture times, which `wall_offset_s` converts to Unix
    time. `input_at` is the Unix time of the node's `ivr.input_received`
    event for the word. The end of speech is the capture time of the last
    voiced caller packet of the last word that ended before that event. The
    reply is the first voiced node packet after the event, because the node
    sends silence while it listens. Returns None when either is missing.
    """
    ends = [end for end in speech_ends(_voiced_times(sent, wall_offset_s)) if end < input_at]
    replies = [t for t in _voiced_times(received, wall_offset_s) if t >= input_at]
    if not ends or not replies:
        return None
    end_of_speech = ends[-1]
    return {
        "end_of_speech_to_input_s": round(input_at - end_of_speech, 3),
        "end_of_speech_to_reply_s": round(replies[0] - end_of_speech, 3),
    }
