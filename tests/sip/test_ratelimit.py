"""Per-source rate limiting of out-of-dialog requests."""

from __future__ import annotations

from signaling.sip.core import CoreConfig
from signaling.sip.ratelimit import RateLimit, SourceRateLimiter
from signaling.sip.routing import Peer
from tests.sip.support import ANSWER_SDP, CoreHarness, sip_request, statuses


def options(number: int) -> bytes:
    return sip_request("OPTIONS", call_id=f"o{number}", branch=f"z9hG4bK-o{number}")


def test_bucket_refills_over_time() -> None:
    limiter = SourceRateLimiter(RateLimit(rate=2.0, burst=2.0))

    first = [limiter.allow("192.0.2.1", 10.0) for _ in range(3)]
    later = limiter.allow("192.0.2.1", 10.5)

    assert first == [True, True, False]
    assert later is True


def test_table_forgets_oldest_source() -> None:
    limiter = SourceRateLimiter(RateLimit(rate=1.0, burst=1.0, max_sources=2))
    limiter.allow("192.0.2.1", 0.0)

    limiter.allow("192.0.2.2", 0.0)
    limiter.allow("192.0.2.3", 0.0)

    # 192.0.2.1 was evicted, so it starts again with a full bucket.
    assert limiter.allow("192.0.2.1", 0.0) is True


def test_excess_requests_get_one_503_then_silence() -> None:
    harness = CoreHarness(CoreConfig(force_rport=True, rate_limit=RateLimit(rate=1.0, burst=2.0)))

    replies = [statuses(harness.feed(options(number))) for number in range(4)]
    harness.advance(1.0)
    after = statuses(harness.feed(options(9)))

    assert replies == [[200], [200], [503], []]
    assert after == [200]


def test_other_sources_and_dialogs_unaffected() -> None:
    harness = CoreHarness(CoreConfig(force_rport=True, rate_limit=RateLimit(rate=0.1, burst=1.0)))
    harness.feed(sip_request("INVITE"))
    handle = harness.offered()[0].session.handle
    ok = harness.run(lambda core, now: core.answer(handle, ANSWER_SDP, now))
    tag = ok[0].parsed.to.tag
    harness.feed(sip_request("ACK", branch="z9hG4bK-a", to_tag=tag))

    in_dialog = harness.feed(sip_request("INFO", branch="z9hG4bK-i", to_tag=tag, cseq=2))
    limited = harness.feed(options(1))
    harness.peer = Peer("udp", "127.0.0.2", 5070)
    other = harness.feed(options(2))

    assert statuses(in_dialog) == [200]
    assert statuses(limited) == [503]
    assert statuses(other) == [200]
