"""Prepared offers against a real aiortc 1.16 peer, in a loopback-only network namespace.

The property under test: every offer that `prepare_webrtc_offer` accepts is
answered by aiortc (with an audio track added, as the WebRTC leg does), and
the completed answer matches the offer's sections. The offers are the
captured browser offers plus `SDP_AIORTC_EXAMPLES` (default 150) random
mutations of them, from a fixed seed (`SDP_AIORTC_SEED`) so that a failure
reproduces.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from signaling.sdp import SdpError, parse
from tests.sdp.fixtures import load_body

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("SDP_AIORTC_EXAMPLES", "150"))
SEED = int(os.environ.get("SDP_AIORTC_SEED", "4733"))
BROWSER_OFFERS = [
    "chrome-style-audio-video-datachannel-offer.sdp",
    "20-alexa-webrtc-offer-static-pt-without-rtpmap.sdp",
    "23-safari-offer-datachannel-only-no-audio.sdp",
    "25-asterisk13-webrtc-offer-without-rtcp-mux.sdp",
]
REPLACEMENTS = [
    "a=rtcp-mux",
    "a=setup:active",
    "a=setup:holdconn",
    "a=fmtp:111 minptime=x",
    "a=fmtp:0 annexb=no",
    "a=extmap:5/sendonly urn:x",
    "a=extmap:5 urn:x attr",
    "a=candidate:1 1 udp 1 192.0.2.1 9 typ",
    "a=ssrc:12 cname",
    "a=rtcp-fb:111",
    "a=rtcp:9 IN IP4",
    "a=group:BUNDLE 0 9",
    "a=bundle-only",
    "a=rtpmap:72 X/8000",
    "m=audio 9 UDP/TLS/RTP/SAVPF 0 8",
    "m=audio 0 UDP/TLS/RTP/SAVPF 111",
    "m=video 9 UDP/TLS/RTP/SAVPF 96",
    "c=IN IP6 ::1",
    "a=sendonly",
    "a=inactive",
    "a=mid:0",
    "a=mid:audio0",
    "a=ice-pwd:x",
    "a=ice-lite",
    "a=ssrc-group:FID 1 x",
    "a=end-of-candidates",
    "a=msid-semantic: WMS",
    "a=fingerprint:sha-256",
    "a=rtpmap:126 telephone-event/8000",
    "a=fmtp:126 0-16",
    "a=candidate:1 1 udp 1 not-an-address 9 typ host",
    "a=candidate:1 1 udp 1 192.0.2.1 99999 typ host",
    "a=candidate:1 1 udp 99999999999 192.0.2.1 9 typ host",
    "a=candidate:1 1 sctp 1 192.0.2.1 9 typ relay raddr 1.2.3.4 rport 5",
    "a=candidate:1 1 udp 1 2001:db8::1 9 typ host",
    "a=candidate:1 1 udp 1 abc.local 9 typ host",
    "a=ssrc:99999999999 cname:x",
    "a=extmap:300 urn:x",
]


def mutate(lines: list[str], rng: random.Random) -> str:
    lines = list(lines)
    for _ in range(rng.randint(1, 3)):
        index = rng.randrange(len(lines))
        action = rng.choice(["delete", "duplicate", "replace", "insert"])
        if action == "delete" and index > 2:
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "replace" and index > 2:
            lines[index] = rng.choice(REPLACEMENTS)
        else:
            lines.insert(max(index, 3), rng.choice(REPLACEMENTS))
    return "".join(f"{line}\r\n" for line in lines)


def corpus() -> list[str]:
    captures = [load_body(name).decode() for name in BROWSER_OFFERS]
    rng = random.Random(SEED)
    offers = list(captures)
    while len(offers) < len(captures) + EXAMPLES:
        text = mutate(rng.choice(captures).splitlines(), rng)
        try:
            parse(text)
        except SdpError:
            continue
        offers.append(text)
    return offers


def run_in_namespace(offers: list[str]) -> list[dict[str, Any]]:
    command = [
        "unshare",
        "--net",
        "sh",
        "-c",
        'ip link set lo up && exec "$0" -m tests.sdp.aiortc_runner',
        sys.executable,
    ]
    completed = subprocess.run(
        command,
        input=json.dumps(offers),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    results: list[dict[str, Any]] = json.loads(completed.stdout)
    return results


@pytest.fixture(scope="module")
def outcomes() -> list[tuple[str, dict[str, Any]]]:
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace with unshare needs root")
    offers = corpus()
    return list(zip(offers, run_in_namespace(offers), strict=True))


@pytest.mark.peer
@pytest.mark.slow
def test_prepared_offers_answered_by_aiortc(outcomes: list[tuple[str, dict[str, Any]]]) -> None:
    failures = [
        (offer, result["prepared_error"])
        for offer, result in outcomes
        if result["prepare_error"] is None and result["prepared_error"] is not None
    ]

    assert failures == []


@pytest.mark.peer
@pytest.mark.slow
def test_completed_answers_match_offers(outcomes: list[tuple[str, dict[str, Any]]]) -> None:
    checked = 0
    for offer_text, result in outcomes:
        if result["completed"] is None:
            continue
        offer = parse(offer_text)
        answer = parse(result["completed"])

        assert [m.media for m in answer.media] == [m.media for m in offer.media]
        assert sum(not m.is_rejected for m in answer.media) == 1
        checked += 1

    assert checked >= 2


@pytest.mark.peer
@pytest.mark.slow
def test_captured_offers_outcomes(outcomes: list[tuple[str, dict[str, Any]]]) -> None:
    by_name = dict(zip(BROWSER_OFFERS, (result for _offer, result in outcomes), strict=False))

    chrome = by_name["chrome-style-audio-video-datachannel-offer.sdp"]
    assert chrome["prepare_error"] is None
    assert chrome["raw_error"] is None
    assert "a=rtpmap:110 telephone-event/48000" in chrome["completed"]

    alexa = by_name["20-alexa-webrtc-offer-static-pt-without-rtpmap.sdp"]
    assert alexa["prepare_error"] is None
    assert alexa["raw_error"].startswith("OperationError")
    assert alexa["completed"] is not None

    safari = by_name["23-safari-offer-datachannel-only-no-audio.sdp"]
    assert "no audio stream" in safari["prepare_error"]
    assert safari["raw_error"].startswith("ValueError")

    asterisk = by_name["25-asterisk13-webrtc-offer-without-rtcp-mux.sdp"]
    assert "no a=rtcp-mux" in asterisk["prepare_error"]
    assert asterisk["raw_error"] == "ValueError: RTCP mux is not enabled"


@pytest.mark.peer
@pytest.mark.slow
def test_mutations_reach_both_outcomes(outcomes: list[tuple[str, dict[str, Any]]]) -> None:
    mutated = outcomes[len(BROWSER_OFFERS) :]
    accepted = sum(result["prepare_error"] is None for _offer, result in mutated)

    assert 0 < accepted < len(mutated)
