"""The outbound INVITE (UAC) core on a virtual clock: timers, ACK, CANCEL, digest, routes."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from signaling.sip.auth import parse_digest
from signaling.sip.core import UserAgent
from signaling.sip.events import CallConfirmed, CallProgress
from signaling.sip.message import SipMessage, SipRequest, build_response, to_bytes
from tests.sip.support import ANSWER_SDP, OFFER_SDP, CoreHarness
from voxgate.logs import LOG_FORMAT, CallIdFilter

TARGET = "sip:100@127.0.0.1:5070"


def place(harness: CoreHarness, **options: object) -> tuple[str, SipRequest]:
    handles: list[str] = []

    def command(core: UserAgent, now: float) -> None:
        handles.append(core.place_call(TARGET, OFFER_SDP, "200", now, **options))  # type: ignore[arg-type]

    sent = harness.run(command)
    assert len(sent) == 1
    assert isinstance(sent[0], SipRequest)
    return handles[0], sent[0]


def reply(
    harness: CoreHarness,
    request: SipRequest,
    status: int,
    *,
    to_tag: str | None = "callee1",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> list[SipMessage]:
    extra = [("Contact", "<sip:100@127.0.0.1:5070>"), *(headers or ())]
    response = build_response(
        request,
        status,
        to_tag=to_tag,
        headers=extra,
        body=body,
        content_type="application/sdp" if body else None,
    )
    return harness.feed(to_bytes(response))


def requests(messages: list[SipMessage], method: str) -> list[SipRequest]:
    return [item for item in messages if isinstance(item, SipRequest) and item.method == method]


def test_invite_retransmits_until_timer_b() -> None:
    harness = CoreHarness()
    place(harness, timeout=300.0)

    resent = harness.advance(31.9)
    assert len(requests(resent, "INVITE")) == 6
    assert harness.ended() == []

    harness.advance(0.2)
    assert [(event.reason, event.status) for event in harness.ended()] == [("timeout", 408)]


def test_provisional_stops_retransmission_and_reports_progress() -> None:
    harness = CoreHarness()
    _, invite = place(harness)

    reply(harness, invite, 100, to_tag=None)
    reply(harness, invite, 183, body=ANSWER_SDP)

    assert requests(harness.advance(10), "INVITE") == []
    progress = [event for event in harness.events if isinstance(event, CallProgress)]
    assert [(event.status, event.sdp) for event in progress] == [(183, ANSWER_SDP)]


def test_2xx_is_acknowledged_each_time_it_arrives() -> None:
    harness = CoreHarness()
    handle, invite = place(harness)

    first = requests(reply(harness, invite, 200, body=ANSWER_SDP), "ACK")
    again = requests(reply(harness, invite, 200, body=ANSWER_SDP), "ACK")

    assert len(first) == 1
    assert to_bytes(first[0]) == to_bytes(again[0])
    assert first[0].parsed.to.tag == "callee1"
    assert first[0].parsed.cseq.number == 1
    assert first[0].parsed.top_via.branch != invite.parsed.top_via.branch
    confirmed = [event for event in harness.events if isinstance(event, CallConfirmed)]
    assert [(event.handle, event.sdp) for event in confirmed] == [(handle, ANSWER_SDP)]
    assert harness.core.calls[handle].remote_sdp == ANSWER_SDP


def test_record_route_becomes_reversed_route_set() -> None:
    harness = CoreHarness()
    handle, invite = place(harness)
    record_route = [("Record-Route", "<sip:10.0.0.1;lr>, <sip:127.0.0.1:5080;lr>")]

    ack = requests(reply(harness, invite, 200, headers=record_route, body=ANSWER_SDP), "ACK")[0]
    bye = requests(harness.run(lambda core, now: core.hangup(handle, now)), "BYE")[0]

    assert ack.headers.raw("Route") == ["<sip:127.0.0.1:5080;lr>", "<sip:10.0.0.1;lr>"]
    assert bye.headers.raw("Route") == ack.headers.raw("Route")
    assert bye.uri == "sip:100@127.0.0.1:5070"
    assert harness.sent[-1].peer.port == 5080


def test_rejection_is_acknowledged_in_the_transaction() -> None:
    harness = CoreHarness()
    _, invite = place(harness)

    ack = requests(reply(harness, invite, 486), "ACK")

    assert len(ack) == 1
    assert ack[0].parsed.top_via.branch == invite.parsed.top_via.branch
    assert ack[0].parsed.to.tag == "callee1"
    assert [(event.reason, event.status) for event in harness.ended()] == [("rejected", 486)]


def test_cancel_waits_for_a_provisional_response() -> None:
    harness = CoreHarness()
    handle, invite = place(harness)

    before_provisional = harness.run(lambda core, now: core.cancel_call(handle, now))
    sent = reply(harness, invite, 180)

    assert requests(before_provisional, "CANCEL") == []
    cancel = requests(sent, "CANCEL")
    assert len(cancel) == 1
    assert cancel[0].parsed.top_via.branch == invite.parsed.top_via.branch
    assert cancel[0].parsed.cseq.number == 1
    assert cancel[0].parsed.to.tag is None
    reply(harness, invite, 487)
    assert [(event.reason, event.status) for event in harness.ended()] == [("cancel", 487)]


def test_2xx_crossing_cancel_gets_ack_then_bye() -> None:
    harness = CoreHarness()
    handle, invite = place(harness)
    reply(harness, invite, 180)
    harness.run(lambda core, now: core.cancel_call(handle, now))

    sent = reply(harness, invite, 200, body=ANSWER_SDP)

    assert [item.method for item in sent if isinstance(item, SipRequest)] == ["ACK", "BYE"]
    assert [event.reason for event in harness.ended()] == ["cancel"]
    assert handle not in harness.core.calls


def test_cancel_without_final_response_gives_up() -> None:
    harness = CoreHarness()
    handle, invite = place(harness)
    reply(harness, invite, 180)
    harness.run(lambda core, now: core.cancel_call(handle, now))

    harness.advance(33)

    assert [(event.reason, event.status) for event in harness.ended()] == [("cancel", 408)]


def test_answer_timeout_cancels() -> None:
    harness = CoreHarness()
    _, invite = place(harness, timeout=20.0)
    reply(harness, invite, 180)

    sent = harness.advance(20.2)

    assert len(requests(sent, "CANCEL")) == 1
    reply(harness, invite, 487)
    assert [event.reason for event in harness.ended()] == ["timeout"]


def test_digest_challenge_is_answered_once() -> None:
    harness = CoreHarness()
    _, invite = place(harness, credentials=("agent7", "s3cret"))
    challenge = 'Digest realm="pbx", nonce="n1", qop="auth", algorithm=SHA-256'

    sent = reply(harness, invite, 407, headers=[("Proxy-Authenticate", challenge)])

    retry = requests(sent, "INVITE")
    assert len(retry) == 1
    assert retry[0].parsed.cseq.number == 2
    assert retry[0].parsed.call_id == invite.parsed.call_id
    assert retry[0].parsed.from_.tag == invite.parsed.from_.tag
    credentials = parse_digest(retry[0].headers.raw("Proxy-Authorization")[0])
    assert credentials.params["username"] == "agent7"
    assert credentials.params["algorithm"] == "SHA-256"
    assert credentials.params["uri"] == TARGET
    assert harness.ended() == []

    reply(harness, retry[0], 407, headers=[("Proxy-Authenticate", challenge)])
    assert [(event.reason, event.status) for event in harness.ended()] == [("rejected", 407)]


def test_challenge_without_credentials_is_a_rejection() -> None:
    harness = CoreHarness()
    _, invite = place(harness)

    sent = reply(
        harness, invite, 401, headers=[("WWW-Authenticate", 'Digest realm="r", nonce="n"')]
    )

    assert requests(sent, "INVITE") == []
    assert [(event.reason, event.status) for event in harness.ended()] == [("rejected", 401)]


def test_session_timer_of_the_callee_is_watched() -> None:
    harness = CoreHarness()
    handle, invite = place(harness)
    expires = [("Session-Expires", "90;refresher=uas"), ("Require", "timer")]
    reply(harness, invite, 200, headers=expires, body=ANSWER_SDP)

    assert requests(harness.advance(59), "BYE") == []
    assert len(requests(harness.advance(1.2), "BYE")) == 1
    assert [event.reason for event in harness.ended()] == ["timeout"]
    assert handle not in harness.core.calls


def answer_as_refreshee(harness: CoreHarness, allow: str) -> tuple[str, SipRequest]:
    handle, invite = place(harness, session_expires=120)
    assert invite.headers.get("Session-Expires") == "120"
    headers = [("Session-Expires", "120;refresher=uac"), ("Require", "timer"), ("Allow", allow)]
    reply(harness, invite, 200, headers=headers, body=ANSWER_SDP)
    return handle, invite


def test_refresher_sends_update_at_half_interval() -> None:
    harness = CoreHarness()
    handle, _ = answer_as_refreshee(harness, "INVITE, ACK, BYE, UPDATE")

    assert requests(harness.advance(59), "UPDATE") == []
    update = requests(harness.advance(1.2), "UPDATE")
    assert len(update) == 1
    assert update[0].headers.get("Session-Expires") == "120;refresher=uac"
    assert update[0].body == b""

    reply(harness, update[0], 200, headers=[("Session-Expires", "100;refresher=uac")])
    assert requests(harness.advance(49), "UPDATE") == []
    assert len(requests(harness.advance(1.2), "UPDATE")) == 1
    assert handle in harness.core.calls


def test_refresher_falls_back_to_reinvite_and_acks_it() -> None:
    harness = CoreHarness()
    handle, _ = answer_as_refreshee(harness, "INVITE, ACK, BYE")

    reinvite = requests(harness.advance(60.2), "INVITE")
    assert len(reinvite) == 1
    assert reinvite[0].body == OFFER_SDP
    sent = reply(harness, reinvite[0], 200, body=ANSWER_SDP)

    ack = requests(sent, "ACK")
    assert len(ack) == 1
    assert ack[0].parsed.cseq.number == reinvite[0].parsed.cseq.number
    assert handle in harness.core.calls


def test_refresh_rejected_with_481_ends_the_call() -> None:
    harness = CoreHarness()
    handle, _ = answer_as_refreshee(harness, "INVITE, ACK, BYE, UPDATE")
    update = requests(harness.advance(60.2), "UPDATE")

    sent = reply(harness, update[0], 481)

    assert len(requests(sent, "BYE")) == 1
    assert [event.reason for event in harness.ended()] == ["timeout"]
    assert handle not in harness.core.calls


def test_second_fork_2xx_gets_bye() -> None:
    harness = CoreHarness()
    handle, invite = place(harness)
    reply(harness, invite, 200, body=ANSWER_SDP)

    sent = reply(harness, invite, 200, to_tag="fork2", body=ANSWER_SDP)

    methods = [item.method for item in sent if isinstance(item, SipRequest)]
    assert methods == ["ACK", "BYE"]
    assert all(item.parsed.to.tag == "fork2" for item in requests(sent, "BYE"))
    assert handle in harness.core.calls
    assert harness.ended() == []


@pytest.mark.parametrize(
    ("drive", "ending"),
    [
        (lambda harness, invite: reply(harness, invite, 486), "ended (rejected)"),
        (lambda harness, invite: harness.advance(32.1), "ended (timeout)"),
    ],
    ids=["response", "timer"],
)
def test_ended_log_line_carries_call_id(
    caplog: pytest.LogCaptureFixture,
    drive: Callable[[CoreHarness, SipRequest], object],
    ending: str,
) -> None:
    harness = CoreHarness()
    handle, invite = place(harness, timeout=300.0)
    formatter = logging.Formatter(LOG_FORMAT)
    id_filter = CallIdFilter()

    # Responses and timers arrive outside any call's task, where the context's call id is "-".
    with caplog.at_level(logging.DEBUG, logger="sip.uac"):
        drive(harness, invite)

    ended = [record for record in caplog.records if record.getMessage().endswith(ending)]
    assert len(ended) == 1
    assert id_filter.filter(ended[0])
    assert getattr(ended[0], "call_id", None) == handle
    line = formatter.format(ended[0])
    assert f"[{handle}] call {handle}: {ending}" in line
    # Every line of the call names it, and none shows the called or calling number.
    for record in caplog.records:
        assert id_filter.filter(record)
        assert f"[{handle}]" in formatter.format(record)
        message = record.getMessage().replace(handle, "")
        assert "100" not in message
        assert "200" not in message
