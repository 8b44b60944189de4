"""The UAS core in memory: call flows, dialogs and timers on a virtual clock."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pytest

from signaling.sip.auth import AuthConfig, digest_response, parse_digest
from signaling.sip.core import CoreConfig
from signaling.sip.events import CallConfirmed, InfoReceived, ReofferReceived
from signaling.sip.message import SipRequest, SipResponse
from signaling.sip.routing import Peer
from signaling.sip.transaction import TimerConfig
from tests.sip.support import (
    ANSWER_SDP,
    OFFER_SDP,
    CoreHarness,
    responses,
    sip_request,
    statuses,
)
from voxgate.logs import LOG_FORMAT, CallIdFilter

INVITE = sip_request("INVITE", body=OFFER_SDP)


def offered_call(harness: CoreHarness, data: bytes = INVITE) -> str:
    before = len(harness.offered())
    sent = harness.feed(data)
    assert statuses(sent) == [100]
    offered = harness.offered()
    assert len(offered) == before + 1
    return offered[-1].session.handle


def answered_call(harness: CoreHarness) -> tuple[str, str]:
    """Set up a confirmed call; return (handle, our To tag)."""
    handle = offered_call(harness)
    sent = harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now))
    tag = responses(sent)[0].parsed.to.tag
    assert tag is not None
    harness.feed(sip_request("ACK", branch="z9hG4bK-ack1", to_tag=tag))
    return handle, tag


def requests(messages: list[SipRequest | SipResponse]) -> list[SipRequest]:
    """Return the requests sent, without retransmissions (same method and branch)."""
    seen: set[tuple[str, str | None]] = set()
    distinct: list[SipRequest] = []
    for message in messages:
        if isinstance(message, SipRequest):
            key = (message.method, message.parsed.top_via.branch)
            if key not in seen:
                seen.add(key)
                distinct.append(message)
    return distinct


def test_answer_sends_200_with_sdp_and_contact() -> None:
    harness = CoreHarness()
    handle = offered_call(harness)

    sent = responses(harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now)))

    assert [response.status for response in sent] == [200]
    assert sent[0].body == ANSWER_SDP
    assert sent[0].headers.get("Content-Type") == "application/sdp"
    assert sent[0].parsed.to.tag is not None
    assert sent[0].parsed.contact[0].uri is not None
    assert "INVITE" in sent[0].headers.get_list("Allow")


def test_call_handle_and_tag_sizes() -> None:
    harness = CoreHarness()
    handle, tag = answered_call(harness)
    second_invite = sip_request("INVITE", call_id="call-2", branch="z9hG4bK-b2", body=OFFER_SDP)
    second_handle = offered_call(harness, second_invite)

    assert re.fullmatch("[0-9a-f]{8}", handle)
    assert re.fullmatch("[0-9a-f]{12}", tag)
    assert second_handle != handle


def test_2xx_retransmitted_until_ack() -> None:
    harness = CoreHarness()
    handle = offered_call(harness)
    first = responses(harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now)))[0]
    start = harness.now

    resent = harness.advance(4.0)

    # §13.3.1.4: T1, doubling up to T2, so at 0.5, 1.5 and 3.5 s.
    assert statuses(resent) == [200, 200, 200]
    assert harness.now - start == 4.0
    harness.feed(sip_request("ACK", branch="z9hG4bK-ack1", to_tag=first.parsed.to.tag))
    assert harness.advance(40.0) == []
    confirmed = [event for event in harness.events if isinstance(event, CallConfirmed)]
    assert len(confirmed) == 1
    assert confirmed[0].sdp is None


def test_missing_ack_sends_bye_and_times_out() -> None:
    harness = CoreHarness()
    handle = offered_call(harness)
    harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now))

    sent = harness.advance(33.0)

    assert [request.method for request in requests(sent)] == ["BYE"]
    assert [event.reason for event in harness.ended()] == ["timeout"]


def test_bye_from_caller_ends_call() -> None:
    harness = CoreHarness()
    handle, tag = answered_call(harness)

    sent = harness.feed(sip_request("BYE", branch="z9hG4bK-bye", to_tag=tag, cseq=2))

    assert statuses(sent) == [200]
    assert [(event.handle, event.reason) for event in harness.ended()] == [(handle, "bye")]


def test_hangup_sends_bye_in_dialog() -> None:
    harness = CoreHarness()
    handle, tag = answered_call(harness)

    sent = requests(harness.run(lambda core, now: core.hangup(handle, now)))

    assert [request.method for request in sent] == ["BYE"]
    bye = sent[0]
    assert bye.uri == "sip:15550100001@127.0.0.1:5070"
    assert bye.parsed.from_.tag == tag
    assert bye.parsed.to.tag == "caller1"
    assert bye.parsed.call_id == "call-1"
    assert harness.sent[-1].peer == Peer("udp", "127.0.0.1", 5070)
    assert [event.reason for event in harness.ended()] == ["hangup"]
    assert harness.run(lambda core, now: core.hangup(handle, now)) == []


def test_hangup_before_ack_waits_for_ack() -> None:
    harness = CoreHarness()
    handle = offered_call(harness)
    tag = responses(harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now)))[0]
    to_tag = tag.parsed.to.tag

    assert requests(harness.run(lambda core, now: core.hangup(handle, now))) == []
    sent = harness.feed(sip_request("ACK", branch="z9hG4bK-ack1", to_tag=to_tag))

    assert [request.method for request in requests(sent)] == ["BYE"]
    assert [event.reason for event in harness.ended()] == ["hangup"]


def test_hangup_before_answer_sends_480() -> None:
    harness = CoreHarness()
    handle = offered_call(harness)

    sent = harness.run(lambda core, now: core.hangup(handle, now))

    assert statuses(sent) == [480]


def test_shutdown_ends_pending_and_confirmed() -> None:
    harness = CoreHarness()
    _, _ = answered_call(harness)
    offered_call(harness, sip_request("INVITE", call_id="call-2", branch="z9hG4bK-2"))

    sent = harness.run(lambda core, now: core.shutdown(now))

    assert statuses(sent) == [487]
    assert [request.method for request in requests(sent)] == ["BYE"]
    assert sorted(event.reason for event in harness.ended()) == ["shutdown", "shutdown"]


def test_cancel_before_answer_sends_487() -> None:
    harness = CoreHarness()
    offered_call(harness)

    sent = harness.feed(sip_request("CANCEL", cseq=1))

    assert statuses(sent) == [200, 487]
    assert responses(sent)[0].headers.get("CSeq") == "1 CANCEL"
    assert [event.reason for event in harness.ended()] == ["cancel"]


def test_cancel_without_invite_gets_481() -> None:
    sent = CoreHarness().feed(sip_request("CANCEL", branch="z9hG4bK-none"))

    assert statuses(sent) == [481]


def test_retransmitted_invite_resends_ringing() -> None:
    harness = CoreHarness()
    handle = offered_call(harness)
    harness.run(lambda core, now: core.ring(handle, now))

    sent = harness.feed(INVITE)

    assert statuses(sent) == [180]
    assert len(harness.offered()) == 1


def test_answered_invite_skips_100() -> None:
    harness = CoreHarness()
    harness.core.receive(INVITE, harness.peer, harness.now)
    harness.events += harness.core.take_events()
    handle = harness.offered()[0].session.handle

    harness.core.answer(handle, ANSWER_SDP, harness.now)
    harness.core.send_trying(harness.now)
    sent = harness.run(lambda core, now: None)

    assert statuses(sent) == [200]
    assert not harness.core.trying_due


def test_retransmitted_invite_gets_100() -> None:
    harness = CoreHarness()
    harness.core.receive(INVITE, harness.peer, harness.now)
    assert harness.core.trying_due

    retransmitted = harness.feed(INVITE)
    harness.core.send_trying(harness.now)
    later = harness.run(lambda core, now: None)

    assert statuses(retransmitted) == [100]
    assert later == []
    assert len(harness.offered()) == 1


def test_merged_request_gets_482() -> None:
    harness = CoreHarness()
    offered_call(harness)

    sent = harness.feed(sip_request("INVITE", branch="z9hG4bK-other", body=OFFER_SDP))

    assert statuses(sent) == [482]


def test_requests_outside_dialog_get_481() -> None:
    harness = CoreHarness()

    bye = harness.feed(sip_request("BYE", to_tag="nope", cseq=2))
    info = harness.feed(sip_request("INFO", branch="z9hG4bK-i", to_tag="nope", cseq=3))
    plain_bye = harness.feed(sip_request("BYE", branch="z9hG4bK-p", cseq=4))

    assert statuses(bye) == [481]
    assert statuses(info) == [481]
    assert statuses(plain_bye) == [481]


def test_info_in_dialog_reported() -> None:
    harness = CoreHarness()
    handle, tag = answered_call(harness)
    body = b"Signal=5\r\nDuration=160\r\n"

    sent = harness.feed(
        sip_request(
            "INFO",
            branch="z9hG4bK-i",
            to_tag=tag,
            cseq=2,
            body=body,
            content_type="application/dtmf-relay",
        )
    )

    assert statuses(sent) == [200]
    infos = [event for event in harness.events if isinstance(event, InfoReceived)]
    assert infos == [InfoReceived(handle, "application/dtmf-relay", body)]


def test_old_cseq_in_dialog_gets_500() -> None:
    harness = CoreHarness()
    _, tag = answered_call(harness)
    harness.feed(sip_request("INFO", branch="z9hG4bK-i1", to_tag=tag, cseq=5))

    sent = harness.feed(sip_request("INFO", branch="z9hG4bK-i2", to_tag=tag, cseq=4))

    assert statuses(sent) == [500]


def test_unknown_and_unallowed_methods() -> None:
    harness = CoreHarness()

    unknown = responses(harness.feed(sip_request("FROBNICATE", branch="z9hG4bK-f")))
    known = responses(harness.feed(sip_request("SUBSCRIBE", branch="z9hG4bK-s")))

    assert [response.status for response in unknown] == [501]
    assert [response.status for response in known] == [405]
    assert "INVITE" in known[0].headers.get_list("Allow")


def test_options_lists_capabilities() -> None:
    sent = responses(CoreHarness().feed(sip_request("OPTIONS")))

    assert sent[0].status == 200
    assert "INVITE" in sent[0].headers.get_list("Allow")
    assert "application/sdp" in sent[0].headers.get_list("Accept")
    assert "timer" in sent[0].headers.get_list("Supported")


def test_max_forwards_zero() -> None:
    harness = CoreHarness()
    invite = INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    options = sip_request("OPTIONS", branch="z9hG4bK-o").replace(
        b"Max-Forwards: 70", b"Max-Forwards: 0"
    )

    assert statuses(harness.feed(invite)) == [483]
    assert statuses(harness.feed(options)) == [200]


def test_call_limit_gets_503_with_retry_after() -> None:
    harness = CoreHarness(CoreConfig(force_rport=True, max_calls=1, retry_after=7))
    offered_call(harness)

    sent = responses(harness.feed(sip_request("INVITE", call_id="call-2", branch="z9hG4bK-2")))

    # Rejected statelessly before the transaction, so without a 100 Trying first.
    assert [response.status for response in sent] == [503]
    assert sent[0].headers.get("Retry-After") == "7"
    assert sent[0].parsed.to.tag is not None


def reinvite(tag: str, cseq: int, branch: str, body: bytes = OFFER_SDP, **kwargs: object) -> bytes:
    return sip_request("INVITE", branch=branch, to_tag=tag, cseq=cseq, body=body, **kwargs)  # type: ignore[arg-type]


def test_reinvite_reoffer_and_answer() -> None:
    harness = CoreHarness()
    handle, tag = answered_call(harness)
    hold = OFFER_SDP + b"a=sendonly\r\n"

    sent = harness.feed(reinvite(tag, 2, "z9hG4bK-re1", hold))
    reoffers = [event for event in harness.events if isinstance(event, ReofferReceived)]
    answer = responses(harness.run(lambda core, now: core.answer_reoffer(handle, b"v=0\r\n", now)))

    assert statuses(sent) == [100]
    assert reoffers == [ReofferReceived(handle, "INVITE", hold)]
    assert [response.status for response in answer] == [200]
    assert answer[0].body == b"v=0\r\n"
    assert answer[0].parsed.to.tag == tag


def test_reinvite_while_pending_gets_500() -> None:
    harness = CoreHarness()
    _, tag = answered_call(harness)
    harness.feed(reinvite(tag, 2, "z9hG4bK-re1"))

    second = harness.feed(reinvite(tag, 3, "z9hG4bK-re2"))
    update = harness.feed(
        sip_request("UPDATE", branch="z9hG4bK-u", to_tag=tag, cseq=4, body=OFFER_SDP)
    )

    assert statuses(second) == [500]
    assert responses(second)[0].headers.get("Retry-After") is not None
    assert statuses(update) == [491]


def test_update_offer_answered() -> None:
    harness = CoreHarness()
    handle, tag = answered_call(harness)

    harness.feed(sip_request("UPDATE", branch="z9hG4bK-u", to_tag=tag, cseq=2, body=OFFER_SDP))
    sent = harness.run(lambda core, now: core.answer_reoffer(handle, ANSWER_SDP, now))

    assert statuses(sent) == [200]


def test_reoffer_declined_gets_488() -> None:
    harness = CoreHarness()
    handle, tag = answered_call(harness)
    harness.feed(reinvite(tag, 2, "z9hG4bK-re1"))

    sent = harness.run(lambda core, now: core.answer_reoffer(handle, None, now))

    assert statuses(sent) == [488]


def test_require_100rel_gets_420() -> None:
    invite = sip_request("INVITE", body=OFFER_SDP, extra=("Require: 100rel",))

    sent = responses(CoreHarness().feed(invite))

    assert [response.status for response in sent] == [420]
    assert sent[0].headers.get_list("Unsupported") == ["100rel"]


def test_session_timer_accepted_and_enforced() -> None:
    harness = CoreHarness()
    invite = sip_request(
        "INVITE", body=OFFER_SDP, extra=("Session-Expires: 120", "Supported: timer")
    )
    handle = offered_call(harness, invite)
    ok = responses(harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now)))[0]
    harness.feed(sip_request("ACK", branch="z9hG4bK-a", to_tag=ok.parsed.to.tag))

    sent = harness.advance(81.0)

    assert ok.headers.get("Session-Expires") == "120;refresher=uac"
    assert "timer" in ok.headers.get_list("Require")
    # RFC 4028 §10: BYE at 120 - min(32, 120/3) = 88 s, not before.
    assert requests(sent) == []
    sent = harness.advance(8.0)
    assert [request.method for request in requests(sent)] == ["BYE"]
    assert [event.reason for event in harness.ended()] == ["timeout"]


def test_session_refresh_rearms_timer() -> None:
    harness = CoreHarness()
    invite = sip_request(
        "INVITE", body=OFFER_SDP, extra=("Session-Expires: 120", "Supported: timer")
    )
    handle = offered_call(harness, invite)
    ok = responses(harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now)))[0]
    tag = ok.parsed.to.tag or ""
    harness.feed(sip_request("ACK", branch="z9hG4bK-a", to_tag=tag))
    harness.advance(60.0)

    refresh = reinvite(tag, 2, "z9hG4bK-r", extra=("Session-Expires: 120", "Supported: timer"))
    harness.feed(refresh)
    harness.run(lambda core, now: core.answer_reoffer(handle, ANSWER_SDP, now))
    harness.feed(sip_request("ACK", branch="z9hG4bK-a2", to_tag=tag, cseq=2))
    sent = harness.advance(80.0)

    assert requests(sent) == []
    assert harness.ended() == []


def test_session_timer_too_small_gets_422() -> None:
    invite = sip_request(
        "INVITE", body=OFFER_SDP, extra=("Session-Expires: 30", "Supported: timer")
    )

    sent = responses(CoreHarness().feed(invite))

    assert [response.status for response in sent] == [422]
    assert sent[0].headers.get("Min-SE") == "90"


def test_session_timer_declined_without_support() -> None:
    harness = CoreHarness()
    handle = offered_call(harness, sip_request("INVITE", extra=("Session-Expires: 1800",)))

    ok = responses(harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now)))[0]

    assert ok.headers.get("Session-Expires") is None


def test_delayed_offer_answer_in_ack() -> None:
    harness = CoreHarness()
    handle = offered_call(harness, sip_request("INVITE"))
    session = harness.offered()[0].session
    ok = responses(harness.run(lambda core, now: core.answer(handle, OFFER_SDP, now)))[0]

    harness.feed(sip_request("ACK", branch="z9hG4bK-a", to_tag=ok.parsed.to.tag, body=ANSWER_SDP))

    assert [event for event in harness.events if isinstance(event, CallConfirmed)] == [
        CallConfirmed(handle, ANSWER_SDP)
    ]
    assert session.remote_sdp == ANSWER_SDP


def test_unsupported_body_gets_415() -> None:
    invite = sip_request("INVITE", body=b"<xml/>", content_type="application/xml")

    sent = responses(CoreHarness().feed(invite))

    assert [response.status for response in sent] == [415]
    assert "application/sdp" in sent[0].headers.get_list("Accept")


def test_multipart_offer_exposes_sdp_part() -> None:
    body = (
        b"--xyz\r\nContent-Type: application/sdp\r\n\r\n" + OFFER_SDP + b"\r\n"
        b"--xyz\r\nContent-Type: application/isup;version=itu-t92+\r\n\r\n\x01\x02\r\n--xyz--\r\n"
    )
    invite = sip_request("INVITE", body=body, content_type="multipart/mixed;boundary=xyz")
    harness = CoreHarness()

    offered_call(harness, invite)

    assert harness.offered()[0].session.remote_sdp == OFFER_SDP


def auth_harness(**kwargs: object) -> CoreHarness:
    auth = AuthConfig(realm="voxgate", users={"alice": "secret"}, **kwargs)  # type: ignore[arg-type]
    return CoreHarness(CoreConfig(force_rport=True, auth=auth))


def authorization(
    challenge: str, method: str, uri: str, nc: str = "00000001", password: str = "secret"
) -> str:
    params = parse_digest(challenge).params
    algorithm = params["algorithm"]
    response = digest_response(
        algorithm, "alice", params["realm"], password, method, uri, params["nonce"], nc, "c0ffee"
    )
    return (
        f'Digest username="alice", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="{uri}", response="{response}", algorithm={algorithm}, qop=auth, nc={nc}, '
        f'cnonce="c0ffee"'
    )


def test_digest_sha256_and_md5_accepted() -> None:
    uri = "sip:15550100000@127.0.0.1"
    for index in (0, 1):
        harness = auth_harness()
        challenge = responses(harness.feed(INVITE))[0]
        value = challenge.headers.raw("WWW-Authenticate")[index]

        header = "Authorization: " + authorization(value, "INVITE", uri)
        sent = harness.feed(
            sip_request("INVITE", cseq=2, branch="z9hG4bK-2", body=OFFER_SDP, extra=(header,))
        )

        assert challenge.status == 401
        assert statuses(sent) == [100]
        assert len(harness.offered()) == 1


def test_digest_wrong_password_and_replay() -> None:
    harness = auth_harness()
    uri = "sip:15550100000@127.0.0.1"
    challenge = responses(harness.feed(INVITE))[0].headers.raw("WWW-Authenticate")[0]
    wrong = "Authorization: " + authorization(challenge, "INVITE", uri, password="guess")
    good = "Authorization: " + authorization(challenge, "INVITE", uri)

    refused = harness.feed(sip_request("INVITE", cseq=2, branch="z9hG4bK-2", extra=(wrong,)))
    accepted = harness.feed(sip_request("INVITE", cseq=3, branch="z9hG4bK-3", extra=(good,)))
    replayed = harness.feed(
        sip_request("INVITE", call_id="c9", cseq=1, branch="z9hG4bK-4", extra=(good,))
    )

    assert statuses(refused) == [401]
    assert statuses(accepted) == [100]
    assert statuses(replayed) == [401]
    assert "stale=true" in responses(replayed)[0].headers.raw("WWW-Authenticate")[0]


def test_trusted_network_skips_digest() -> None:
    harness = auth_harness(trusted_networks=["127.0.0.0/8"])

    sent = harness.feed(INVITE)

    assert statuses(sent) == [100]
    assert len(harness.offered()) == 1


def test_untrusted_source_without_users_gets_403() -> None:
    auth = AuthConfig(trusted_networks=["192.0.2.0/24"])
    harness = CoreHarness(CoreConfig(force_rport=True, auth=auth))

    sent = harness.feed(INVITE)

    assert statuses(sent) == [403]


def test_register_challenge_then_binding() -> None:
    harness = auth_harness()
    uri = "sip:127.0.0.1"
    register = sip_request("REGISTER", uri=uri, extra=("Expires: 600",))
    register = register.replace(b"sip:15550100000@127.0.0.1>", b"sip:alice@127.0.0.1>")
    challenge = responses(harness.feed(register))[0].headers.raw("WWW-Authenticate")[0]
    header = "Authorization: " + authorization(challenge, "REGISTER", uri)

    retry = register.replace(b"CSeq: 1", b"CSeq: 2").replace(b"z9hG4bK-b1", b"z9hG4bK-b2")
    retry = retry.replace(b"Expires: 600", b"Expires: 600\r\n" + header.encode())
    sent = responses(harness.feed(retry))

    assert [response.status for response in sent] == [200]
    assert sent[0].headers.get("Contact") == "<sip:15550100001@127.0.0.1:5070>;expires=600"
    assert harness.core.registrar.contacts("alice@127.0.0.1", harness.now) == [
        "sip:15550100001@127.0.0.1:5070"
    ]


def test_short_timers_are_configurable() -> None:
    timers = TimerConfig(t1=0.1, t2=0.4, t4=1.0)
    harness = CoreHarness(CoreConfig(force_rport=True, timers=timers))
    handle = offered_call(harness)
    harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now))

    sent = harness.advance(6.5)

    assert [request.method for request in requests(sent)] == ["BYE"]


def test_unanswered_call_times_out_with_480() -> None:
    harness = CoreHarness(CoreConfig(force_rport=True, answer_timeout=30.0))
    handle = offered_call(harness)
    harness.run(lambda core, now: core.ring(handle, now))

    early = harness.advance(29.0)
    sent = harness.advance(1.2)

    assert statuses(early) == []
    assert statuses(sent) == [480]
    assert [event.reason for event in harness.ended()] == ["timeout"]


def test_reinvite_2xx_retransmitted_until_ack() -> None:
    harness = CoreHarness()
    handle, tag = answered_call(harness)
    harness.feed(reinvite(tag, 2, "z9hG4bK-re1"))
    harness.run(lambda core, now: core.answer_reoffer(handle, ANSWER_SDP, now))

    resent = harness.advance(2.0)
    harness.feed(sip_request("ACK", branch="z9hG4bK-a2", to_tag=tag, cseq=2))
    later = harness.advance(40.0)

    assert statuses(resent) == [200, 200]
    assert all(r.headers.get("CSeq") == "2 INVITE" for r in responses(resent))
    assert later == []
    assert harness.ended() == []


def test_reinvite_without_ack_ends_call() -> None:
    harness = CoreHarness()
    handle, tag = answered_call(harness)
    harness.feed(reinvite(tag, 2, "z9hG4bK-re1"))
    harness.run(lambda core, now: core.answer_reoffer(handle, ANSWER_SDP, now))

    sent = harness.advance(33.0)

    assert [request.method for request in requests(sent)] == ["BYE"]
    assert [event.reason for event in harness.ended()] == ["timeout"]


def test_offerless_reinvite_answer_in_ack() -> None:
    harness = CoreHarness()
    handle, tag = answered_call(harness)
    harness.feed(reinvite(tag, 2, "z9hG4bK-re1", body=b""))
    harness.run(lambda core, now: core.answer_reoffer(handle, ANSWER_SDP, now))

    harness.feed(sip_request("ACK", branch="z9hG4bK-a2", to_tag=tag, cseq=2, body=OFFER_SDP))

    confirmed = [event for event in harness.events if isinstance(event, CallConfirmed)]
    assert confirmed[-1] == CallConfirmed(handle, OFFER_SDP)
    reoffers = [event for event in harness.events if isinstance(event, ReofferReceived)]
    assert reoffers[-1].sdp is None


def test_cancelled_reinvite_gets_487_and_call_continues() -> None:
    harness = CoreHarness()
    handle, tag = answered_call(harness)
    harness.feed(reinvite(tag, 2, "z9hG4bK-re1"))

    sent = harness.feed(sip_request("CANCEL", branch="z9hG4bK-re1", to_tag=tag, cseq=2))
    late = harness.run(lambda core, now: core.answer_reoffer(handle, ANSWER_SDP, now))

    assert statuses(sent) == [200, 487]
    assert late == []
    assert harness.ended() == []


def test_reject_reason_cannot_inject_headers() -> None:
    harness = CoreHarness()
    handle = offered_call(harness)

    sent = harness.run(lambda core, now: core.reject(handle, 486, "Busy\r\nX-Evil: 1", now))

    assert statuses(sent) == [486]
    assert responses(sent)[0].reason == "BusyX-Evil: 1"
    assert responses(sent)[0].headers.get("X-Evil") is None


def test_response_via_gets_received_and_rport() -> None:
    harness = CoreHarness(peer=Peer("udp", "127.0.0.9", 40000))

    sent = responses(harness.feed(sip_request("OPTIONS")))

    via = sent[0].parsed.top_via
    assert via.params["received"] == "127.0.0.9"
    assert via.params["rport"] == "40000"
    assert harness.sent[0].peer == Peer("udp", "127.0.0.9", 40000)


def ended_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if ": ended (" in record.getMessage()]


def test_ended_log_line_carries_call_id(caplog: pytest.LogCaptureFixture) -> None:
    harness = CoreHarness()
    handle, tag = answered_call(harness)
    formatter = logging.Formatter(LOG_FORMAT)
    id_filter = CallIdFilter()

    # The BYE arrives outside any call's task, where the context's call id is "-".
    with caplog.at_level(logging.DEBUG, logger="sip.core"):
        harness.feed(sip_request("BYE", branch="z9hG4bK-bye", to_tag=tag, cseq=2))

    ended = ended_records(caplog)
    assert [record.levelno for record in ended] == [logging.DEBUG]
    assert id_filter.filter(ended[0])
    assert getattr(ended[0], "call_id", None) == handle
    assert f"[{handle}] call {handle}: ended (bye)" in formatter.format(ended[0])


def test_normal_ends_log_nothing_at_info(caplog: pytest.LogCaptureFixture) -> None:
    by_caller, by_node = CoreHarness(), CoreHarness()
    _, tag = answered_call(by_caller)
    handle, _ = answered_call(by_node)

    with caplog.at_level(logging.INFO, logger="sip.core"):
        by_caller.feed(sip_request("BYE", branch="z9hG4bK-bye", to_tag=tag, cseq=2))
        by_node.run(lambda core, now: core.hangup(handle, now))

    assert [event.reason for event in by_caller.ended() + by_node.ended()] == ["bye", "hangup"]
    assert ended_records(caplog) == []


def test_timeout_end_logs_at_info(caplog: pytest.LogCaptureFixture) -> None:
    harness = CoreHarness()
    handle = offered_call(harness)
    harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now))

    with caplog.at_level(logging.INFO, logger="sip.core"):
        harness.advance(33.0)

    ended = ended_records(caplog)
    assert [(record.levelno, record.getMessage()) for record in ended] == [
        (logging.INFO, f"call {handle}: ended (timeout)")
    ]


def timer_invite() -> bytes:
    return sip_request("INVITE", body=OFFER_SDP, extra=("Session-Expires: 120", "Supported: timer"))


def end_confirmed_by_hangup(harness: CoreHarness) -> str:
    handle, _ = answered_call(harness)
    harness.run(lambda core, now: core.hangup(handle, now))
    return handle


def end_session_timer_call_by_bye(harness: CoreHarness) -> str:
    handle = offered_call(harness, timer_invite())
    ok = responses(harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now)))[0]
    tag = ok.parsed.to.tag or ""
    harness.feed(sip_request("ACK", branch="z9hG4bK-a", to_tag=tag))
    harness.feed(sip_request("BYE", branch="z9hG4bK-bye", to_tag=tag, cseq=2))
    return handle


def end_during_reinvite_by_hangup(harness: CoreHarness) -> str:
    handle, tag = answered_call(harness)
    harness.feed(reinvite(tag, 2, "z9hG4bK-re1"))
    harness.run(lambda core, now: core.answer_reoffer(handle, ANSWER_SDP, now))
    harness.run(lambda core, now: core.hangup(handle, now))
    return handle


def end_before_ack_by_hangup(harness: CoreHarness) -> str:
    handle = offered_call(harness)
    ok = responses(harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now)))[0]
    harness.run(lambda core, now: core.hangup(handle, now))
    harness.feed(sip_request("ACK", branch="z9hG4bK-a", to_tag=ok.parsed.to.tag))
    return handle


def end_before_answer_by_hangup(harness: CoreHarness) -> str:
    handle = offered_call(harness, timer_invite())
    harness.run(lambda core, now: core.hangup(handle, now))
    return handle


@pytest.mark.parametrize(
    "end_call",
    [
        end_confirmed_by_hangup,
        end_session_timer_call_by_bye,
        end_during_reinvite_by_hangup,
        end_before_ack_by_hangup,
        end_before_answer_by_hangup,
    ],
)
def test_ended_call_keeps_no_timers(end_call: Callable[[CoreHarness], str]) -> None:
    harness = CoreHarness()

    handle = end_call(harness)

    assert [event.handle for event in harness.ended()] == [handle]
    assert [key for key in harness.core._timers if key[:2] == ("call", handle)] == []
