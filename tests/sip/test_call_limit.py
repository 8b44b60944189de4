"""The call limit and overload: early stateless 503 with Retry-After; ACKs found by caller."""

from __future__ import annotations

from signaling.sip.core import CoreConfig
from signaling.sip.dialog import CallState
from signaling.sip.message import SipMessage, SipResponse
from signaling.sip.ratelimit import OverloadReport
from tests.sip.support import (
    ANSWER_SDP,
    OFFER_SDP,
    CoreHarness,
    responses,
    sip_request,
    statuses,
)

FIRST = sip_request("INVITE", body=OFFER_SDP)
SECOND = sip_request("INVITE", call_id="call-2", branch="z9hG4bK-2", body=OFFER_SDP)


def limited_harness() -> tuple[CoreHarness, str]:
    """Return a core with `max_calls=1` and the handle of its one offered call."""
    harness = CoreHarness(CoreConfig(force_rport=True, max_calls=1, retry_after=9))
    assert statuses(harness.feed(FIRST)) == [100]
    return harness, harness.offered()[0].session.handle


def only_response(messages: list[SipMessage]) -> SipResponse:
    found = responses(messages)
    assert len(found) == 1
    return found[0]


def test_retransmission_gets_same_503() -> None:
    harness, _ = limited_harness()

    first = only_response(harness.feed(SECOND))
    again = only_response(harness.feed(SECOND))

    assert first.status == 503
    assert again.status == 503
    assert first.headers.get("Retry-After") == "9"
    assert first.parsed.to.tag is not None
    assert again.parsed.to.tag == first.parsed.to.tag
    assert len(harness.offered()) == 1


def test_other_invites_get_other_tags() -> None:
    harness, _ = limited_harness()
    third = sip_request("INVITE", call_id="call-3", branch="z9hG4bK-3", body=OFFER_SDP)

    second_tag = only_response(harness.feed(SECOND)).parsed.to.tag
    third_tag = only_response(harness.feed(third)).parsed.to.tag

    assert second_tag != third_tag


def test_ack_of_503_is_absorbed() -> None:
    harness, _ = limited_harness()
    tag = only_response(harness.feed(SECOND)).parsed.to.tag
    events_before = len(harness.events)

    ack = sip_request("ACK", call_id="call-2", branch="z9hG4bK-2", to_tag=tag)
    sent = harness.feed(ack)

    assert sent == []
    assert len(harness.events) == events_before


def test_rejected_invite_arms_no_timer() -> None:
    harness, _ = limited_harness()
    deadline = harness.core.next_deadline()

    harness.feed(SECOND)

    assert harness.core.next_deadline() == deadline


def test_limit_frees_when_call_ends() -> None:
    harness, handle = limited_harness()
    harness.run(lambda core, now: core.reject(handle, 486, None, now))

    sent = harness.feed(SECOND)

    assert statuses(sent) == [100]
    assert len(harness.offered()) == 2


def test_in_dialog_invite_not_limited() -> None:
    harness, handle = limited_harness()
    answer = only_response(harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now)))
    tag = answer.parsed.to.tag
    assert tag is not None
    harness.feed(sip_request("ACK", branch="z9hG4bK-ack1", to_tag=tag))

    reinvite = sip_request("INVITE", branch="z9hG4bK-re", to_tag=tag, cseq=2, body=OFFER_SDP)
    sent = harness.feed(reinvite)

    assert statuses(sent) == [100]


def test_rejected_with_503_carries_retry_after() -> None:
    harness, handle = limited_harness()

    sent = only_response(harness.run(lambda core, now: core.reject(handle, 503, "No port", now)))

    assert sent.status == 503
    assert sent.headers.get("Retry-After") == "9"


def test_other_rejections_have_no_retry_after() -> None:
    harness, handle = limited_harness()

    sent = only_response(harness.run(lambda core, now: core.reject(handle, 486, None, now)))

    assert sent.status == 486
    assert sent.headers.get("Retry-After") is None


def test_ack_with_other_to_tag_confirms_call() -> None:
    harness, handle = limited_harness()
    harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now))

    harness.feed(sip_request("ACK", branch="z9hG4bK-ack1", to_tag="not-our-tag"))

    assert harness.core.calls[handle].state is CallState.CONFIRMED


def test_ack_with_other_cseq_confirms_nothing() -> None:
    harness, handle = limited_harness()
    harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now))

    harness.feed(sip_request("ACK", branch="z9hG4bK-ack1", to_tag="not-our-tag", cseq=7))

    assert harness.core.calls[handle].state is CallState.ANSWERED


def test_overload_report_first_then_per_interval() -> None:
    report = OverloadReport(interval_s=10.0)

    first = report.count(100.0)
    first_covers = report.reported
    quiet = [report.count(100.0 + step) for step in range(1, 6)]
    later = report.count(110.0)

    assert first
    assert first_covers == 1
    assert quiet == [False] * 5
    assert later
    assert report.reported == 6


def test_overloaded_core_rejects_new_invites() -> None:
    harness = CoreHarness(CoreConfig(force_rport=True, retry_after=4))
    harness.core.overloaded = True

    rejected = only_response(harness.feed(FIRST))
    harness.core.overloaded = False
    accepted = harness.feed(SECOND)

    assert rejected.status == 503
    assert rejected.headers.get("Retry-After") == "4"
    assert statuses(accepted) == [100]
    assert len(harness.offered()) == 1
