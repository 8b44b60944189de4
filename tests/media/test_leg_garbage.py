"""A closed media leg is freed by reference counting, with its C core built.

The leg's C core refers back to the leg, so the leg drops the core when it
closes. Before, every call's leg waited for the garbage collector.
"""

from __future__ import annotations

import gc
import weakref

from ivr.channel import DtmfInput
from media.audio import PcmAudio
from media.leg import MediaLeg
from tests.media.conftest import RecordingHandler, SessionPair
from tests.media.test_dtmf_inband import key_sequence


async def test_closed_leg_freed_without_collector(session_pair: SessionPair) -> None:
    a, b = session_pair
    sender = RecordingHandler()
    pcm = key_sequence("7", 8000, on_ms=100, off_ms=100)
    sender.outbound = [
        PcmAudio(pcm[i : i + 320].ljust(320, b"\0"), 8000) for i in range(0, len(pcm), 320)
    ]
    gc.collect()
    gc.disable()
    try:
        leg = MediaLeg(b, call_id="b")
        a.attach(sender)
        assert await leg.next_input(10) == DtmfInput("7", 100)
        assert leg._endpointer is not None
        await leg.close()
        reference = weakref.ref(leg)
        del leg

        assert reference() is None
    finally:
        gc.enable()
