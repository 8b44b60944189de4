"""Caller sentiment per turn, from -1 (angry) to 1 (pleased).

English uses VADER's compound score. Other languages compare the utterance
with anchor phrases of each class on the intent embeddings, e5 when it loads
and character n-gram TF-IDF otherwise. The score is the best similarity to a
positive anchor minus the best similarity to a negative anchor, scaled and
clipped to [-1, 1].
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ivr.intents import E5Embedder, Embedder, TfidfEmbedder, e5_available
from ivr.understanding import SentimentScore, language_subtag

ANCHORS: dict[str, dict[str, list[str]]] = {
    "positive": {
        "en": ["thank you so much", "that is great", "perfect, that helps", "I am happy"],
        "zh": ["非常感谢", "太好了", "很满意", "谢谢你的帮助"],
        "ko": ["정말 감사합니다", "아주 좋아요", "만족합니다", "도와주셔서 고마워요"],
    },
    "negative": {
        "en": ["this is terrible", "I am very angry", "worst service ever", "I am fed up"],
        "zh": ["太糟糕了", "我非常生气", "服务太差了", "我受够了"],
        "ko": ["정말 최악이에요", "너무 화가 나요", "서비스가 형편없어요", "지긋지긋해요"],
    },
    "neutral": {
        "en": ["I have a question", "my order number", "I want to check something"],
        "zh": ["我有一个问题", "我的订单号", "我想查一下"],
        "ko": ["질문이 있어요", "제 주문 번호", "확인하고 싶어요"],
    },
}
# Scale from an anchor similarity difference to the [-1, 1] range. e5 similarities
# crowd into 0.75-0.95, so their differences are small.
SCALE = {"e5": 12.0, "tfidf": 2.5}
LABEL_BAND = 0.15


def _label(score: float) -> str:
    if score >= LABEL_BAND:
        return "positive"
    if score <= -LABEL_BAND:
        return "negative"
    return "neutral"


class VaderAnalyzer:
    """VADER (English only); thread-safe after construction."""

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._vader: Any = SentimentIntensityAnalyzer()

    def score(self, text: str, language: str) -> SentimentScore:
        compound = float(self._vader.polarity_scores(text)["compound"])
        return SentimentScore(compound, _label(compound), "vader")


class AnchorAnalyzer:
    """Similarity to per-class anchor phrases, for any language with anchors."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        if embedder is None:
            corpus = [p for lang in ANCHORS.values() for ps in lang.values() for p in ps]
            embedder = E5Embedder() if e5_available() else TfidfEmbedder(corpus)
        self.embedder = embedder
        self._anchors: dict[tuple[str, str], np.ndarray[Any, Any]] = {}
        for label, languages in ANCHORS.items():
            for language, phrases in languages.items():
                self._anchors[(label, language)] = embedder.embed(phrases)

    def score(self, text: str, language: str) -> SentimentScore:
        subtag = language_subtag(language)
        if ("positive", subtag) not in self._anchors:
            subtag = "en"
        vector = self.embedder.embed([text])[0]
        best = {
            label: float(np.max(self._anchors[(label, subtag)] @ vector))
            for label in ("positive", "negative", "neutral")
        }
        raw = (best["positive"] - best["negative"]) * SCALE[self.embedder.name]
        score = float(np.clip(raw, -1.0, 1.0))
        if best["neutral"] > max(best["positive"], best["negative"]):
            score *= 0.5
        return SentimentScore(score, _label(score), f"anchors-{self.embedder.name}")


class DefaultAnalyzer:
    """VADER for English, embedding anchors for other languages; built lazily."""

    def __init__(self) -> None:
        self._vader: VaderAnalyzer | None = None
        self._anchors: AnchorAnalyzer | None = None
        self._lock = threading.Lock()

    def score(self, text: str, language: str) -> SentimentScore:
        with self._lock:
            if language_subtag(language) == "en":
                if self._vader is None:
                    self._vader = VaderAnalyzer()
                return self._vader.score(text, language)
            if self._anchors is None:
                self._anchors = AnchorAnalyzer()
            return self._anchors.score(text, language)


_default: DefaultAnalyzer | None = None


def default_analyzer() -> DefaultAnalyzer:
    """Return the process-wide default analyzer."""
    global _default
    if _default is None:
        _default = DefaultAnalyzer()
    return _default
