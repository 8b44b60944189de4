"""Interfaces between the engine and language understanding (intents, sentiment)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class IntentResult:
    """The best intent for an utterance, or None when rejected, with the scores behind it."""

    intent: str | None
    score: float
    runner_up: str | None
    runner_up_score: float
    engine: str
    reason: str = ""


class IntentMatcher(Protocol):
    def classify(
        self, text: str, language: str, candidates: Sequence[str] | None = None
    ) -> IntentResult:
        """Return the best of `candidates` (all intents if None) for `text`."""
        ...


@dataclass(frozen=True, slots=True)
class SentimentScore:
    """Caller sentiment of one turn: `score` from -1 (angry) to 1 (pleased)."""

    score: float
    label: str
    engine: str


class SentimentAnalyzer(Protocol):
    def score(self, text: str, language: str) -> SentimentScore:
        """Return the sentiment of one caller utterance."""
        ...


def language_subtag(language: str) -> str:
    """Return the primary language subtag: "zh-CN" -> "zh"."""
    return language.split("-")[0].split("_")[0].lower()
