"""Server transactions past their final response linger as compact entries.

An Accepted INVITE (RFC 6026) and a Completed non-INVITE transaction on UDP
leave only their key, response bytes and peer, and still absorb
retransmissions or resend the final response until Timer L or J ends.
"""

from __future__ import annotations

import math

import pytest

from signaling.sip.core import CoreConfig
from signaling.sip.transaction import ServerInviteTransaction, Timer
from tests.sip.support import (
    ANSWER_SDP,
    OFFER_SDP,
    CoreHarness,
    responses,
    sip_request,
    statuses,
)

INVITE = sip_request("INVITE", body=OFFER_SDP)


def answered(harness: CoreHarness) -> str:
    assert statuses(harness.feed(INVITE)) == [100]
    handle = harness.offered()[0].session.handle
    sent = responses(harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now)))
    tag = sent[0].parsed.to.tag
    assert tag is not None
    harness.feed(sip_request("ACK", branch="z9hG4bK-ack1", to_tag=tag))
    return handle


def invite_transactions(harness: CoreHarness) -> list[ServerInviteTransaction]:
    return [t for t in harness.core._server.values() if isinstance(t, ServerInviteTransaction)]


def test_accepted_invite_lingers_without_transaction() -> None:
    harness = CoreHarness()
    answered(harness)

    assert invite_transactions(harness) == []
    [(response, transport, host, port, _)] = harness.core._lingering.values()
    assert response is None
    assert (transport, host, port) == ("udp", "127.0.0.1", 5070)


def test_retransmitted_invite_absorbed_after_answer() -> None:
    harness = CoreHarness()
    answered(harness)

    sent = harness.feed(INVITE)

    assert sent == []
    assert len(harness.offered()) == 1


def test_invite_after_timer_l_is_new_call() -> None:
    harness = CoreHarness(CoreConfig(force_rport=True))
    handle = answered(harness)
    harness.run(lambda core, now: core.hangup(handle, now))
    harness.advance(40.0)

    sent = harness.feed(INVITE)

    assert invite_transactions(harness) != []
    assert statuses(sent) == [100]
    assert len(harness.offered()) == 2


def test_cancel_after_answer_gets_200() -> None:
    harness = CoreHarness()
    handle = answered(harness)

    sent = harness.feed(sip_request("CANCEL"))

    assert statuses(sent) == [200]
    assert handle in harness.core.calls


def test_retransmitted_bye_gets_same_200() -> None:
    harness = CoreHarness()
    handle = answered(harness)
    tag = harness.core.calls[handle].local_tag
    bye = sip_request("BYE", branch="z9hG4bK-bye1", to_tag=tag, cseq=2)
    first = harness.feed(bye)

    again = harness.feed(bye)

    assert statuses(first) == [200]
    assert statuses(again) == [200]
    assert again[0].headers.get("To") == first[0].headers.get("To")


def test_lingering_entries_end_with_timers() -> None:
    harness = CoreHarness()
    handle = answered(harness)
    tag = harness.core.calls[handle].local_tag
    harness.feed(sip_request("BYE", branch="z9hG4bK-bye1", to_tag=tag, cseq=2))
    assert len(harness.core._lingering) == 2
    assert harness.core.next_deadline() == pytest.approx(harness.now + 32.0, abs=1.0)

    harness.advance(40.0)

    assert harness.core._lingering == {}
    assert harness.core._call_by_invite == {}
    assert harness.core.next_deadline() is None


def test_lingering_entry_counts_as_armed() -> None:
    harness = CoreHarness()
    handle = answered(harness)
    tag = harness.core.calls[handle].local_tag
    harness.core.earliest_armed = math.inf
    harness.feed(sip_request("BYE", branch="z9hG4bK-bye1", to_tag=tag, cseq=2))

    # The 200 to the BYE starts Timer J, and only the lingering entry keeps its deadline.
    bye_key = next(key for key in harness.core._lingering if key.startswith("z9hG4bK-bye1|"))
    assert harness.core.earliest_armed == harness.core._lingering[bye_key][4]
    assert not any(name is Timer.J for _, _, name in harness.core._timers)


def test_lingering_entries_end_in_deadline_order() -> None:
    harness = CoreHarness()
    first = answered(harness)
    harness.advance(10.0)
    harness.feed(
        sip_request(
            "BYE", branch="z9hG4bK-bye1", to_tag=harness.core.calls[first].local_tag, cseq=2
        )
    )
    keys = list(harness.core._lingering)
    assert len(keys) == 2

    # Timer L of the INVITE ends first, Timer J of the BYE 10 s later.
    harness.advance(25.0)
    assert list(harness.core._lingering) == keys[1:]
    harness.advance(10.0)
    assert harness.core._lingering == {}
