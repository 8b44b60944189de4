"""An accepted INVITE transaction keeps only its start line, and still absorbs retransmissions."""

from __future__ import annotations

from signaling.sip.core import CoreConfig
from signaling.sip.transaction import ServerInviteTransaction, State
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


def test_accepted_transaction_keeps_start_line() -> None:
    harness = CoreHarness()
    answered(harness)

    [transaction] = invite_transactions(harness)

    assert transaction.state is State.ACCEPTED
    assert transaction.request.method == "INVITE"
    assert transaction.request.info is None
    assert len(transaction.request.headers) == 0


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
