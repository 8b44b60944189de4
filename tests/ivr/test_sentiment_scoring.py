"""Sentiment is scored only in flows that have satisfaction rules or read the scores."""

from __future__ import annotations

import gc

import pytest

from ivr import turns
from ivr.events import EventKind
from ivr.turns import reads_sentiment
from ivr.understanding import SentimentScore
from tests.ivr.helpers import flow_from_text, run_flow

PLAIN = """
flow: plain
steps:
  ask:
    type: gather
    prompt: How can I help?
    speech: {}
    on: {default: bye, no_input: bye, no_match: bye}
  bye: {type: hangup}
"""

TEMPLATE = """
flow: template
steps:
  ask:
    type: gather
    prompt: How can I help?
    speech: {}
    on: {default: tell, no_input: bye, no_match: bye}
  tell:
    type: say
    text: "Your mood is {{ sentiment | round(1) }}."
  bye: {type: hangup}
"""

CONDITION = """
flow: condition
steps:
  ask:
    type: gather
    prompt: How can I help?
    speech: {}
    on: {default: route, no_input: bye, no_match: bye}
  route:
    type: branch
    cases:
      - {if: {var: satisfaction, lt: 0}, goto: bye}
    otherwise: bye
  bye: {type: hangup}
"""

RULE = """
flow: rule
satisfaction:
  - {at_turn: 5, below: -0.5, goto: bye}
steps:
  ask:
    type: gather
    prompt: How can I help?
    speech: {}
    on: {default: bye, no_input: bye, no_match: bye}
  bye: {type: hangup}
"""


class CountingAnalyzer:
    """A sentiment analyzer that scores every text neutral and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, text: str, language: str) -> SentimentScore:
        self.calls += 1
        return SentimentScore(0.0, "neutral", "counting")


@pytest.mark.parametrize(
    ("text", "expected"),
    [(PLAIN, False), (TEMPLATE, True), (CONDITION, True), (RULE, False)],
)
def test_reads_sentiment_finds_readers(text: str, expected: bool) -> None:
    assert reads_sentiment(flow_from_text(text)) is expected


def test_reads_sentiment_remembered_per_flow() -> None:
    plain = flow_from_text(PLAIN)
    template = flow_from_text(TEMPLATE)

    # Asked twice, each flow keeps its own result.
    assert reads_sentiment(plain) is False
    assert reads_sentiment(template) is True
    assert reads_sentiment(plain) is False
    assert reads_sentiment(template) is True
    assert id(plain) in turns._SENTIMENT_READERS

    key = id(plain)
    del plain
    gc.collect()
    assert key not in turns._SENTIMENT_READERS


@pytest.mark.parametrize(
    ("text", "scored"),
    [(PLAIN, 0), (TEMPLATE, 1), (CONDITION, 1), (RULE, 1)],
)
async def test_speech_turn_scored_when_needed(text: str, scored: int) -> None:
    analyzer = CountingAnalyzer()
    run = await run_flow(flow_from_text(text), ["I want a refund"], sentiment=analyzer)
    assert analyzer.calls == scored
    assert len(run.of_kind(EventKind.SENTIMENT)) == scored
    assert len(run.result.sentiment) == scored
