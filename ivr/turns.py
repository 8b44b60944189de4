"""Give meaning to one caller turn of a gather or menu step.

A `TurnInterpreter` builds the collection plan of a step, then maps the
captured digits or utterance to an outcome (match, no_input, no_match) and
a target step. It also scores intents, scores sentiment when the flow has
satisfaction rules or reads `sentiment` or `satisfaction`, and applies the
satisfaction rules. Classification is CPU work and runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
import weakref
from dataclasses import dataclass, field
from typing import Any

from ivr.channel import RecognizerConfig
from ivr.events import EventKind
from ivr.gather import Capture, CaptureKind, CollectPlan
from ivr.model import DtmfSpec, Flow, GatherStep, MenuStep
from ivr.understanding import (
    IntentMatcher,
    IntentResult,
    SentimentAnalyzer,
    language_subtag,
)

MENU_SPEECH_ALLOWANCE_S = 20.0
_PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)
SENTIMENT_VARIABLES = frozenset({"sentiment", "satisfaction"})
_TEMPLATE_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def reads_sentiment(flow: Flow) -> bool:
    """Return whether a template or condition of `flow` reads `sentiment` or `satisfaction`.

    The result is kept per flow object, which is frozen. Every IVR
    session calls this, and the walk through `model_dump` of every step took
    26-200 µs for the flows in config/flows (timeit).
    """
    key = id(flow)
    entry = _SENTIMENT_READERS.get(key)
    if entry is not None and entry[0]() is flow:
        return entry[1]
    result = any(
        _strings_read_sentiment(step.model_dump(by_alias=True)) for step in flow.steps.values()
    )

    def forget(_: object) -> None:
        _SENTIMENT_READERS.pop(key, None)

    # The entry goes when its flow is freed, before another object can take the same id.
    _SENTIMENT_READERS[key] = (weakref.ref(flow, forget), result)
    return result


_SENTIMENT_READERS: dict[int, tuple[weakref.ref[Flow], bool]] = {}


def _strings_read_sentiment(value: Any) -> bool:
    if isinstance(value, dict):
        if value.get("var") is not None and str(value["var"]).split(".")[0] in SENTIMENT_VARIABLES:
            return True
        return any(_strings_read_sentiment(item) for item in value.values())
    if isinstance(value, list):
        return any(_strings_read_sentiment(item) for item in value)
    if isinstance(value, str) and "{{" in value:
        for expression in _TEMPLATE_EXPRESSION.findall(value):
            first = _NAME.search(expression)
            if first is not None and first.group() in SENTIMENT_VARIABLES:
                return True
    return False


def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation, fold width and collapse spaces."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCTUATION.sub(" ", folded).split())


def _phrase_in(phrase: str, text: str) -> bool:
    phrase, text = normalize_text(phrase), normalize_text(text)
    if not phrase:
        return False
    if " " not in text and " " not in phrase and not phrase.isascii():
        return phrase in text
    return f" {phrase} " in f" {text} "


def _match_phrase(text: str, phrases: list[str]) -> str | None:
    """Return the normalized phrase equal to `text`, else the only phrase inside it."""
    normalized = [normalize_text(p) for p in phrases]
    if text in normalized:
        return text
    inside = {p for p in normalized if _phrase_in(p, text)}
    return inside.pop() if len(inside) == 1 else None


@dataclass
class TurnOutcome:
    """`result` is "match", "no_input" or "no_match"; `target` is set for a match."""

    result: str
    value: Any = None
    target: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[EventKind, dict[str, Any]]] = field(default_factory=list)
    escalate_to: str | None = None


class TurnInterpreter:
    """Interpret the turns of one session; keeps the turn count and sentiment trajectory."""

    def __init__(
        self,
        flow: Flow,
        *,
        intents: IntentMatcher | None,
        sentiment: SentimentAnalyzer | None,
    ) -> None:
        self._main = flow
        self._flows: dict[str, Flow] = {flow.flow: flow}
        self._injected_intents = intents
        self._matchers: dict[str, IntentMatcher] = {}
        self._sentiment = sentiment
        # Scoring costs 15-50 ms per turn with e5 (and seconds for its first load), on
        # the path from the caller's utterance to the reply, so flows that neither have
        # satisfaction rules nor read the variables skip it.
        self._sentiment_readers = {flow.flow: reads_sentiment(flow)}
        self.turns = 0
        self.sentiment_scores: list[float] = []
        self._fired_rules: set[int] = set()

    def add_flow(self, flow: Flow) -> None:
        self._flows[flow.flow] = flow
        self._sentiment_readers[flow.flow] = reads_sentiment(flow)

    def scores_sentiment(self, flow: Flow) -> bool:
        """Return whether speech turns in `flow` are scored for sentiment."""
        if self._main.satisfaction or self._sentiment_readers.get(self._main.flow, False):
            return True
        readers = self._sentiment_readers
        if flow.flow not in readers:
            readers[flow.flow] = reads_sentiment(flow)
        return readers[flow.flow]

    def _matcher(self, flow: Flow) -> IntentMatcher:
        if self._injected_intents is not None:
            return self._injected_intents
        matcher = self._matchers.get(flow.flow)
        if matcher is None:
            from ivr.intents import classifier_for_flow

            matcher = classifier_for_flow(flow)
            self._matchers[flow.flow] = matcher
        return matcher

    def _analyzer(self) -> SentimentAnalyzer:
        if self._sentiment is None:
            from ivr.sentiment import default_analyzer

            self._sentiment = default_analyzer()
        return self._sentiment

    # -- plans --------------------------------------------------------------

    def plan(self, step: GatherStep | MenuStep, flow: Flow) -> CollectPlan:
        if isinstance(step, GatherStep):
            recognizer = None
            if step.speech is not None:
                recognizer = RecognizerConfig(
                    step.speech.language or flow.language,
                    tuple(step.speech.phrases) if step.speech.phrases is not None else None,
                    step.speech.end_silence_ms or flow.end_silence_ms,
                )
            return CollectPlan(
                step.dtmf, recognizer, step.timeout_s, step.total_timeout_s, step.barge_in
            )
        language = step.language or flow.language
        dtmf = None
        if any(option.key is not None for option in step.options):
            dtmf = DtmfSpec(max_digits=1, min_digits=1, terminator=None)
        phrases: list[str] = []
        for option in step.options:
            phrases.extend(option.phrases)
            intent = flow.intents.get(option.intent) if option.intent else None
            if intent is not None:
                phrases.extend(intent.examples.get(language_subtag(language), []))
        recognizer = (
            RecognizerConfig(language, tuple(dict.fromkeys(phrases)), flow.end_silence_ms)
            if phrases
            else None
        )
        total = step.timeout_s + MENU_SPEECH_ALLOWANCE_S
        return CollectPlan(dtmf, recognizer, step.timeout_s, total, step.barge_in)

    # -- interpretation ------------------------------------------------------

    async def interpret(
        self,
        step_id: str,
        step: GatherStep | MenuStep,
        capture: Capture,
        following: str | None,
        flow: Flow,
    ) -> TurnOutcome:
        if capture.kind is CaptureKind.NO_INPUT:
            return TurnOutcome("no_input")
        self.turns += 1
        if isinstance(step, MenuStep):
            outcome = await self._menu(step, capture, flow)
        else:
            outcome = await self._gather(step, capture, following, flow)
        if capture.kind is CaptureKind.SPEECH and self.scores_sentiment(flow):
            language = (
                step.language
                if isinstance(step, MenuStep)
                else step.speech and step.speech.language
            ) or flow.language
            await self._score_sentiment(capture.value, language, outcome)
        self._apply_satisfaction_rules(outcome)
        return outcome

    async def _gather(
        self, step: GatherStep, capture: Capture, following: str | None, flow: Flow
    ) -> TurnOutcome:
        value: str
        if capture.kind is CaptureKind.DTMF:
            assert step.dtmf is not None
            value = capture.value
            if len(value) < step.dtmf.min_digits:
                return TurnOutcome("no_match", value=value)
            if step.dtmf.pattern is not None and not re.fullmatch(step.dtmf.pattern, value):
                return TurnOutcome("no_match", value=value)
        else:
            assert step.speech is not None
            speech = step.speech
            outcome = TurnOutcome("match", variables={"transcript": capture.value})
            if capture.confidence < speech.min_confidence:
                outcome.result = "no_match"
                return outcome
            candidates = speech.intents or []
            if candidates:
                result = await self._classify(capture.value, speech.language, flow, candidates)
                self._record_intent(result, outcome)
                if result.intent is None:
                    outcome.result = "no_match"
                    return outcome
                value = result.intent
            else:
                value = normalize_text(capture.value)
                if speech.phrases is not None:
                    phrase = _match_phrase(value, speech.phrases)
                    if phrase is None:
                        outcome.result = "no_match"
                        return outcome
                    value = phrase
            outcome.value = value
            outcome.target = self._target(step, value, following)
            if outcome.target is None:
                outcome.result = "no_match"
            return outcome
        target = self._target(step, value, following)
        if target is None:
            return TurnOutcome("no_match", value=value)
        return TurnOutcome("match", value=value, target=target)

    @staticmethod
    def _target(step: GatherStep, value: str, following: str | None) -> str | None:
        if value in step.on:
            return step.on[value]
        if "default" in step.on:
            return step.on["default"]
        if step.next is not None:
            return step.next
        value_keys = [k for k in step.on if k not in ("no_input", "no_match", "error")]
        return following if not value_keys else None

    async def _menu(self, step: MenuStep, capture: Capture, flow: Flow) -> TurnOutcome:
        if capture.kind is CaptureKind.DTMF:
            for option in step.options:
                if option.key == capture.value:
                    # A key choice names its option's intent as a spoken one does.
                    variables = {"intent": option.intent} if option.intent else {}
                    return TurnOutcome(
                        "match", value=capture.value, target=option.goto, variables=variables
                    )
            return TurnOutcome("no_match", value=capture.value)
        outcome = TurnOutcome("no_match", variables={"transcript": capture.value})
        if capture.confidence < step.min_confidence:
            return outcome
        for option in step.options:
            if any(_phrase_in(phrase, capture.value) for phrase in option.phrases):
                outcome.result, outcome.target = "match", option.goto
                outcome.value = option.intent or option.phrases[0]
                if option.intent:
                    outcome.variables["intent"] = option.intent
                return outcome
        candidates = [o.intent for o in step.options if o.intent is not None]
        if candidates:
            result = await self._classify(capture.value, step.language, flow, candidates)
            self._record_intent(result, outcome)
            for option in step.options:
                if result.intent is not None and option.intent == result.intent:
                    outcome.result, outcome.target, outcome.value = (
                        "match",
                        option.goto,
                        result.intent,
                    )
        return outcome

    async def _classify(
        self, text: str, language: str | None, flow: Flow, candidates: list[str]
    ) -> IntentResult:
        # Building a flow's classifier embeds all its examples, so it runs off the loop too.
        def classify() -> IntentResult:
            return self._matcher(flow).classify(text, language or flow.language, candidates)

        return await asyncio.to_thread(classify)

    @staticmethod
    def _record_intent(result: IntentResult, outcome: TurnOutcome) -> None:
        outcome.variables["intent"] = result.intent
        outcome.variables["intent_score"] = round(result.score, 4)
        outcome.events.append(
            (
                EventKind.INTENT_SCORED,
                {
                    "intent": result.intent,
                    "score": result.score,
                    "runner_up": result.runner_up,
                    "runner_up_score": result.runner_up_score,
                    "engine": result.engine,
                    "reason": result.reason,
                },
            )
        )

    async def _score_sentiment(self, text: str, language: str, outcome: TurnOutcome) -> None:
        analyzer = self._analyzer()
        scored = await asyncio.to_thread(analyzer.score, text, language)
        self.sentiment_scores.append(scored.score)
        satisfaction = sum(self.sentiment_scores) / len(self.sentiment_scores)
        outcome.variables["sentiment"] = round(scored.score, 4)
        outcome.variables["satisfaction"] = round(satisfaction, 4)
        outcome.events.append(
            (
                EventKind.SENTIMENT,
                {
                    "turn": self.turns,
                    "score": scored.score,
                    "label": scored.label,
                    "engine": scored.engine,
                    "satisfaction": satisfaction,
                },
            )
        )

    def _apply_satisfaction_rules(self, outcome: TurnOutcome) -> None:
        if not self.sentiment_scores:
            return
        satisfaction = sum(self.sentiment_scores) / len(self.sentiment_scores)
        for index, rule in enumerate(self._main.satisfaction):
            if index in self._fired_rules or rule.at_turn != self.turns:
                continue
            if satisfaction < rule.below:
                self._fired_rules.add(index)
                outcome.escalate_to = rule.goto
                outcome.events.append(
                    (
                        EventKind.WARNING,
                        {
                            "message": "caller satisfaction below threshold",
                            "turn": self.turns,
                            "satisfaction": satisfaction,
                            "threshold": rule.below,
                            "goto": rule.goto,
                        },
                    )
                )
                return
