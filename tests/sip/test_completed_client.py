"""Client non-INVITE transactions past their final response linger as compact entries.

On UDP the BYE we send completes with its 200 and then only waits out
Timer K (T4) to absorb retransmitted responses. It leaves its key and
deadline in a table of its own, and the UA core drops it when Timer K
would have ended the transaction.
"""

from __future__ import annotations

import logging
import math

import pytest

from signaling.sip.core import CoreConfig
from signaling.sip.message import SipRequest, build_response, to_bytes
from signaling.sip.routing import Peer
from signaling.sip.transaction import Timer, client_key
from tests.sip.support import (
    ANSWER_SDP,
    OFFER_SDP,
    CoreHarness,
    responses,
    sip_request,
    statuses,
)

T4 = 5.0


def hung_up(harness: CoreHarness) -> SipRequest:
    """Answer a call, confirm it, hang up, and return the BYE that the core sent."""
    transport = harness.peer.transport.upper()
    invite = sip_request("INVITE", body=OFFER_SDP).replace(
        b"SIP/2.0/UDP", f"SIP/2.0/{transport}".encode()
    )
    assert statuses(harness.feed(invite)) == [100]
    handle = harness.offered()[0].session.handle
    sent = responses(harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now)))
    tag = sent[0].parsed.to.tag
    assert tag is not None
    ack = sip_request("ACK", branch="z9hG4bK-ack1", to_tag=tag)
    harness.feed(ack.replace(b"SIP/2.0/UDP", f"SIP/2.0/{transport}".encode()))
    [bye] = harness.run(lambda core, now: core.hangup(handle, now))
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    return bye


def bye_key(bye: SipRequest) -> str:
    branch = bye.parsed.top_via.branch
    assert branch is not None
    return client_key(branch, "BYE")


def test_completed_bye_lingers_without_transaction() -> None:
    harness = CoreHarness()
    bye = hung_up(harness)
    key = bye_key(bye)
    harness.core.earliest_armed = math.inf

    harness.feed(to_bytes(build_response(bye, 200)))

    assert harness.core._client == {}
    assert harness.core._client_owner == {}
    assert harness.core._client_lingering == {key: pytest.approx(harness.now + T4)}
    assert harness.core.earliest_armed == harness.core._client_lingering[key]
    assert not any(name is Timer.K for _, _, name in harness.core._timers)


def test_retransmitted_bye_response_absorbed(caplog: pytest.LogCaptureFixture) -> None:
    harness = CoreHarness()
    bye = hung_up(harness)
    response = to_bytes(build_response(bye, 200))
    harness.feed(response)
    events_before = list(harness.events)

    with caplog.at_level(logging.DEBUG, logger="sip.core"):
        sent = harness.feed(response)

    assert sent == []
    assert harness.events == events_before
    assert "matches no client transaction" not in caplog.text


def test_lingering_bye_ends_after_timer_k() -> None:
    harness = CoreHarness()
    bye = hung_up(harness)
    forgotten: list[str] = []
    forget = harness.core._on_client_forgotten

    def record_forgotten(key: str) -> None:
        forgotten.append(key)
        forget(key)

    harness.core._on_client_forgotten = record_forgotten  # type: ignore[method-assign]
    harness.feed(to_bytes(build_response(bye, 200)))

    harness.advance(T4 - 0.1)
    assert forgotten == []
    harness.advance(0.2)

    assert forgotten == [bye_key(bye)]
    assert harness.core._client_lingering == {}
    assert not harness.core._client_lingering_ends


def test_late_bye_response_dropped_after_timer_k(caplog: pytest.LogCaptureFixture) -> None:
    harness = CoreHarness()
    bye = hung_up(harness)
    response = to_bytes(build_response(bye, 200))
    harness.feed(response)
    harness.advance(T4 + 1.0)

    with caplog.at_level(logging.DEBUG, logger="sip.core"):
        sent = harness.feed(response)

    assert sent == []
    assert "matches no client transaction" in caplog.text


def test_completed_bye_on_tcp_ends_at_once() -> None:
    harness = CoreHarness(CoreConfig(), Peer("tcp", "127.0.0.1", 5070, connection=1))
    bye = hung_up(harness)

    harness.feed(to_bytes(build_response(bye, 200)))
    assert harness.core._client_lingering == {}
    harness.advance(0.0)

    assert harness.core._client == {}
    assert not any(kind == "client" for kind, _, _ in harness.core._timers)
