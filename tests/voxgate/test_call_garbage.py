"""A finished SIP call leaves no reference cycle, so reference counting frees it.

At a steady call rate, a cycle per call left every call's session, media
leg and RTP session to the garbage collector, and its pauses then set the
p99 of INVITE -> 200. The calls here run through `bench/sip_path.py`'s node.
"""

from __future__ import annotations

import argparse
import gc
from collections import Counter

from bench.sip_path import measure

WATCHED = ("InboundCall", "RtpSession", "MediaLeg", "IvrSession", "SipCallChannel")


async def test_finished_calls_leave_no_cycles() -> None:
    args = argparse.Namespace(
        calls=6, warm_up=2, concurrency=2, profile_calls=0, top=0, log_level="INFO"
    )
    gc.collect()
    gc.disable()
    try:
        result = await measure(args, freeze=False)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found = Counter(type(item).__name__ for item in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()

    assert result["ended"] == result["expected"]
    assert {name: found[name] for name in WATCHED if found[name]} == {}
