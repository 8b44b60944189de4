"""Static checks of a schema-valid flow.

Each check returns `Diagnostic`s positioned on the key at fault. The checks
cover unknown step targets, unreachable steps, flows that run off the end,
gathers without no-input or no-match handling, and loops with no exit. They
also cover unknown variables, invalid templates, unknown intents, intents
without examples, invalid regular expressions, missing or unreadable WAV
files, voices espeak-ng does not have, and transfer targets outside the
allow-list. With the server settings at hand, queue steps must name a
queue the settings define. A step that pauses the call recording gets a warning when a queue
step can follow it unresumed, because the whole agent conversation would then
be silence.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ivr.graph import falls_through, flow_edges
from ivr.loader import Diagnostic, SourceMap
from ivr.model import (
    TERMINAL_TYPES,
    Condition,
    Flow,
    GatherStep,
    HttpStep,
    MenuStep,
    Prompt,
    PromptSpec,
    QueueStep,
    RecordStep,
    SayStep,
    SetStep,
    SubflowStep,
    TransferStep,
)
from ivr.prompts import load_wav
from ivr.templates import Template, TemplateError
from ivr.turns import normalize_text
from ivr.understanding import language_subtag
from ivr.yamlmarks import PathPart
from media.tts import voice_exists, voice_languages

Key = tuple[PathPart, ...]

BUILTIN_VARIABLES = frozenset(
    {
        "caller",
        "called",
        "call_id",
        "flow",
        "language",
        "last_input",
        "last_input_mode",
        "transcript",
        "intent",
        "intent_score",
        "sentiment",
        "satisfaction",
        "queue",
        "http_status",
        "http_error",
    }
)


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
    return f"known steps: {shown}"


def check_flow(
    flow: Flow,
    source: SourceMap,
    base_dir: Path,
    known_flows: set[str] | None = None,
    known_queues: set[str] | None = None,
) -> list[Diagnostic]:
    """Run every static check; returns errors and warnings in file order.

    `known_flows` are the flow names a subflow step may use, and `known_queues`
    the queue names a queue step may use (`acd.queues` of the server settings).
    None skips that check.
    """
    checker = _Checker(flow, source, base_dir)
    checker.run()
    if known_flows is not None:
        checker.check_subflows(known_flows)
    if known_queues is not None:
        checker.check_queues(known_queues)
    return sorted(checker.found, key=lambda d: (d.line, d.column))


class _Checker:
    def __init__(self, flow: Flow, source: SourceMap, base_dir: Path) -> None:
        self.flow = flow
        self.source = source
        self.base_dir = base_dir
        self.found: list[Diagnostic] = []

    def error(self, key: Key, message: str, hint: str = "", *, value: Any = ...) -> None:
        self.found.append(self.source.diagnostic(key, message, hint=hint, value=value))

    def warning(self, key: Key, message: str, hint: str = "") -> None:
        self.found.append(self.source.diagnostic(key, message, hint=hint, severity="warning"))

    def run(self) -> None:
        self.check_targets()
        self.check_reachability()
        self.check_gathers()
        self.check_outcome_keys()
        self.check_loops()
        self.check_templates()
        self.check_intents()
        self.check_patterns()
        self.check_audio()
        self.check_voices()
        self.check_transfers()
        self.check_recording_pauses()

    # -- graph ----------------------------------------------------------------

    def check_targets(self) -> None:
        known = list(self.flow.steps)
        if self.flow.start is not None and self.flow.start not in self.flow.steps:
            self.error(("start",), "unknown step", _suggest(self.flow.start, known))
        for edge in flow_edges(self.flow):
            if edge.target not in self.flow.steps:
                self.error(edge.key, "unknown step", _suggest(edge.target, known))
        for step_id, step in self.flow.steps.items():
            if step.type in TERMINAL_TYPES or getattr(step, "next", None) is not None:
                continue
            if falls_through(step) and self.flow.following(step_id) is None:
                self.error(
                    ("steps", step_id, "type"),
                    "the flow runs off its end after this step",
                    "add 'next:' or finish with a hangup, queue or transfer step",
                )

    def _adjacency(self) -> dict[str, list[str]]:
        adjacency: dict[str, list[str]] = {step_id: [] for step_id in self.flow.steps}
        for edge in flow_edges(self.flow):
            if edge.source in adjacency and edge.target in self.flow.steps:
                adjacency[edge.source].append(edge.target)
        return adjacency

    def check_reachability(self) -> None:
        adjacency = self._adjacency()
        roots = [self.flow.start_step] + [rule.goto for rule in self.flow.satisfaction]
        seen: set[str] = set()
        stack = [r for r in roots if r in self.flow.steps]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(adjacency[node])
        for step_id in self.flow.steps:
            if step_id not in seen:
                self.error(
                    ("steps", step_id),
                    "step is unreachable",
                    "no step leads here; link it or remove it",
                    value=step_id,
                )

    def check_gathers(self) -> None:
        for step_id, step in self.flow.steps.items():
            if not isinstance(step, GatherStep | MenuStep):
                continue
            for outcome in ("no_input", "no_match"):
                if outcome not in step.on:
                    self.error(
                        ("steps", step_id, "on") if step.on else ("steps", step_id),
                        f"{step.type} has no '{outcome}' handling",
                        f"add 'on: {{{outcome}: STEP}}' for callers who "
                        + ("stay silent" if outcome == "no_input" else "give an invalid answer"),
                    )

    def check_outcome_keys(self) -> None:
        for step_id, step in self.flow.steps.items():
            if not isinstance(step, GatherStep):
                continue
            for key in step.on:
                if key in ("no_input", "no_match", "default", "error"):
                    continue
                if not _answer_possible(step, key):
                    self.warning(
                        ("steps", step_id, "on", key),
                        f"no answer to this gather can be '{key}'",
                        "match the DTMF digit count, a speech phrase or an intent of the step",
                    )

    def check_loops(self) -> None:
        adjacency = self._adjacency()
        for component in _strongly_connected(adjacency):
            if len(component) == 1:
                node = next(iter(component))
                if node not in adjacency[node]:
                    continue
            exits = any(
                self.flow.steps[node].type in TERMINAL_TYPES
                or self.flow.steps[node].type == "subflow"
                or any(target not in component for target in adjacency[node])
                for node in component
            )
            if not exits:
                first = min(component, key=list(self.flow.steps).index)
                members = ", ".join(s for s in self.flow.steps if s in component)
                self.error(
                    ("steps", first),
                    f"loop with no exit: {members}",
                    "give one of these steps a way out: a branch, a no_input target or a hangup",
                    value=first,
                )

    def check_subflows(self, known_flows: set[str]) -> None:
        names = sorted(known_flows)
        for step_id, step in self.flow.steps.items():
            if isinstance(step, SubflowStep) and step.flow not in known_flows:
                close = difflib.get_close_matches(step.flow, names, n=1)
                self.error(
                    ("steps", step_id, "flow"),
                    "unknown flow",
                    f"did you mean '{close[0]}'?"
                    if close
                    else "add the flow file to the same folder",
                )

    def check_queues(self, known_queues: set[str]) -> None:
        """Check each queue name without a template against `known_queues`.

        A templated name is known only during a call, so it is not checked.
        """
        names = sorted(known_queues)
        for step_id, step in self.flow.steps.items():
            if not isinstance(step, QueueStep) or "{{" in step.queue:
                continue
            if step.queue in known_queues:
                continue
            close = difflib.get_close_matches(step.queue, names, n=1)
            if close:
                hint = f"did you mean '{close[0]}'?"
            elif names:
                shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
                hint = f"acd.queues defines {shown}"
            else:
                hint = "the settings define no queue: add it under acd.queues"
            self.error(("steps", step_id, "queue"), "unknown queue: not in acd.queues", hint)

    # -- templates and variables ------------------------------------------------

    def _known_variables(self) -> set[str]:
        known = set(BUILTIN_VARIABLES) | set(self.flow.variables)
        for step in self.flow.steps.values():
            if isinstance(step, GatherStep) and step.into is not None:
                known.add(step.into)
            elif isinstance(step, SetStep):
                known.update(step.values)
            elif isinstance(step, HttpStep):
                known.update(step.save)
            elif isinstance(step, RecordStep):
                known.add(step.into)
        return known

    def _templates(self) -> Iterator[tuple[Key, str]]:
        for step_id, step in self.flow.steps.items():
            base: Key = ("steps", step_id)
            if isinstance(step, SayStep) and step.text is not None:
                yield (*base, "text"), step.text
            for name in ("prompt", "no_input_prompt", "no_match_prompt", "announcement"):
                spec: PromptSpec | None = getattr(step, name, None)
                if isinstance(spec, str):
                    yield (*base, name), spec
                elif isinstance(spec, Prompt) and spec.text is not None:
                    yield (*base, name, "text"), spec.text
            if isinstance(step, SetStep):
                for name, value in step.values.items():
                    if isinstance(value, str):
                        yield (*base, "values", name), value
            if isinstance(step, HttpStep):
                yield (*base, "url"), step.url
                for name, value in step.headers.items():
                    yield (*base, "headers", name), value
                if step.json_body is not None:
                    yield from _strings_in((*base, "json"), step.json_body)
            if isinstance(step, QueueStep):
                yield (*base, "queue"), step.queue
                for index, skill in enumerate(step.skills):
                    yield (*base, "skills", index), skill
                for index, rule in enumerate(step.rules):
                    for number, skill in enumerate(rule.skills):
                        yield (*base, "rules", index, "skills", number), skill
                for name, value in (step.context or {}).items():
                    yield (*base, "context", name), value
            if isinstance(step, TransferStep):
                yield (*base, "target"), step.target

    def check_templates(self) -> None:
        known = self._known_variables()
        names = sorted(known)
        for key, text in self._templates():
            try:
                template = Template(text)
            except TemplateError as exc:
                self.error(key, f"invalid template: {exc}")
                continue
            for name, has_default in template.variables():
                if name not in known and not has_default:
                    close = difflib.get_close_matches(name, names, n=1)
                    hint = (
                        f"did you mean '{close[0]}'?"
                        if close
                        else (
                            "set it in 'variables:', a set step, a gather 'into' or an http 'save'"
                        )
                    )
                    self.error(key, f"unknown variable '{name}'", hint)
        for step_id, step in self.flow.steps.items():
            conditions: list[tuple[Key, Condition]] = []
            if hasattr(step, "cases"):
                conditions = [
                    (("steps", step_id, "cases", i, "if"), case.if_)
                    for i, case in enumerate(step.cases)
                ]
            if isinstance(step, QueueStep):
                conditions = [
                    (("steps", step_id, "rules", i, "if"), rule.if_)
                    for i, rule in enumerate(step.rules)
                ]
            for key, condition in conditions:
                for sub_key, sub in _walk_conditions(key, condition):
                    if sub.var is not None and sub.var.split(".")[0] not in known:
                        self.error((*sub_key, "var"), f"unknown variable '{sub.var}'")

    # -- intents, patterns, audio, transfers ---------------------------------------

    def check_intents(self) -> None:
        language = language_subtag(self.flow.language)
        for name, intent in self.flow.intents.items():
            for lang, examples in intent.examples.items():
                if not [e for e in examples if e.strip()]:
                    self.error(
                        ("intents", name, "examples", lang),
                        f"intent '{name}' has no examples for '{lang}'",
                        "list a few phrases callers say for this intent",
                    )
            if language not in intent.examples:
                self.error(
                    ("intents", name, "examples"),
                    f"intent '{name}' has no examples in the flow language '{language}'",
                    f"add 'examples: {{{language}: [...]}}'",
                )
        known = sorted(self.flow.intents)
        for step_id, step in self.flow.steps.items():
            used: list[tuple[Key, str]] = []
            if isinstance(step, GatherStep) and step.speech and step.speech.intents:
                used = [
                    (("steps", step_id, "speech", "intents", i), n)
                    for i, n in enumerate(step.speech.intents)
                ]
            if isinstance(step, MenuStep):
                used = [
                    (("steps", step_id, "options", i, "intent"), o.intent)
                    for i, o in enumerate(step.options)
                    if o.intent is not None
                ]
                for index, option in enumerate(step.options):
                    if option.key is None and not option.phrases and option.intent is None:
                        self.error(
                            ("steps", step_id, "options", index),
                            "option cannot be selected",
                            "give it a 'key', 'phrases' or an 'intent'",
                        )
            for key, name in used:
                if name not in self.flow.intents:
                    close = difflib.get_close_matches(name, known, n=1)
                    self.error(
                        key,
                        f"unknown intent '{name}'",
                        f"did you mean '{close[0]}'?" if close else "define it under 'intents:'",
                    )

    def check_patterns(self) -> None:
        for step_id, step in self.flow.steps.items():
            if isinstance(step, GatherStep) and step.dtmf and step.dtmf.pattern is not None:
                self._regex(("steps", step_id, "dtmf", "pattern"), step.dtmf.pattern)
            conditions: list[tuple[Key, Condition]] = []
            if hasattr(step, "cases"):
                conditions = [
                    (("steps", step_id, "cases", i, "if"), c.if_) for i, c in enumerate(step.cases)
                ]
            if isinstance(step, QueueStep):
                conditions = [
                    (("steps", step_id, "rules", i, "if"), r.if_) for i, r in enumerate(step.rules)
                ]
            for key, condition in conditions:
                for sub_key, sub in _walk_conditions(key, condition):
                    if sub.matches is not None:
                        self._regex((*sub_key, "matches"), sub.matches)
                    if sub.caller is not None and sub.caller.matches is not None:
                        self._regex((*sub_key, "caller", "matches"), sub.caller.matches)

    def _regex(self, key: Key, pattern: str) -> None:
        try:
            re.compile(pattern)
        except re.error as exc:
            self.error(key, f"invalid regular expression: {exc}")

    def check_audio(self) -> None:
        for step_id, step in self.flow.steps.items():
            candidates: list[tuple[Key, str]] = []
            if isinstance(step, SayStep) and step.audio is not None:
                candidates.append((("steps", step_id, "audio"), step.audio))
            for name in ("prompt", "no_input_prompt", "no_match_prompt", "announcement"):
                spec = getattr(step, name, None)
                if isinstance(spec, Prompt) and spec.audio is not None:
                    candidates.append((("steps", step_id, name, "audio"), spec.audio))
            for key, relative in candidates:
                path = self.base_dir / relative
                if not path.is_file():
                    self.error(key, "WAV file not found", f"looked for {path}")
                    continue
                try:
                    load_wav(path)
                except (ValueError, OSError) as exc:
                    self.error(key, f"unusable WAV file: {exc}", "use 16-bit mono PCM")

    def check_voices(self) -> None:
        """Every `voice:` must be one espeak-ng has (a language such as en-us, +variant)."""
        candidates: list[tuple[Key, str]] = []
        if isinstance(self.source.data, dict) and "voice" in self.source.data:
            candidates.append((("voice",), self.flow.voice))
        for step_id, step in self.flow.steps.items():
            voice = getattr(step, "voice", None)
            if isinstance(voice, str):
                candidates.append((("steps", step_id, "voice"), voice))
            for name in ("prompt", "no_input_prompt", "no_match_prompt", "announcement"):
                spec = getattr(step, name, None)
                if isinstance(spec, Prompt) and spec.voice is not None:
                    candidates.append((("steps", step_id, name, "voice"), spec.voice))
        for key, voice in candidates:
            if voice_exists(voice):
                continue
            language = voice.split("+", 1)[0].lower()
            near = difflib.get_close_matches(language, voice_languages(), n=8, cutoff=0.5)
            close = [name for name in near if voice_exists(name)][:3]
            hint = (
                "did you mean " + ", ".join(f"'{c}'" for c in close) + "?"
                if close
                else "use an espeak-ng language such as en-us or de, optionally with +variant"
            )
            self.error(key, "unknown voice: espeak-ng has no voice by that name", hint)

    def check_transfers(self) -> None:
        for step_id, step in self.flow.steps.items():
            if not isinstance(step, TransferStep):
                continue
            template = None
            try:
                template = Template(step.target)
            except TemplateError:
                continue
            if not self.flow.transfer_allow:
                self.error(
                    ("steps", step_id, "target"),
                    "transfers are not allowed by this flow",
                    "list allowed targets under 'transfer_allow:'",
                )
            elif template.is_constant and not any(
                fnmatch.fnmatchcase(step.target, p) for p in self.flow.transfer_allow
            ):
                self.error(
                    ("steps", step_id, "target"),
                    "target is not in transfer_allow",
                    "add a matching pattern to 'transfer_allow:'",
                )

    def check_recording_pauses(self) -> None:
        adjacency = self._adjacency()
        for step_id, step in self.flow.steps.items():
            if step.recording != "pause":
                continue
            seen: set[str] = set()
            stack = list(adjacency[step_id])
            queues: list[str] = []
            while stack:
                node = stack.pop()
                if node in seen:
                    continue
                seen.add(node)
                following = self.flow.steps[node]
                if following.recording in ("resume", "stop"):
                    continue
                if following.type == "queue":
                    queues.append(node)
                stack.extend(adjacency[node])
            if queues:
                names = ", ".join(s for s in self.flow.steps if s in queues)
                self.warning(
                    ("steps", step_id, "recording"),
                    f"the recording stays paused into queue step {names}",
                    "add 'recording: resume' to a step on the way, or to the queue step",
                )


def _answer_possible(step: GatherStep, key: str) -> bool:
    """Return whether a caller answer can produce the value `key` at this gather."""
    dtmf = step.dtmf
    if dtmf is not None and dtmf.min_digits <= len(key) <= dtmf.max_digits:
        keys = set("0123456789*#ABCD") - {dtmf.terminator or ""}
        if all(c in keys for c in key):
            return True
    speech = step.speech
    if speech is None:
        return False
    if speech.intents:
        return key in speech.intents
    if speech.phrases is not None:
        return normalize_text(key) in {normalize_text(p) for p in speech.phrases}
    return True


def _strings_in(key: Key, value: Any) -> Iterator[tuple[Key, str]]:
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _strings_in((*key, name), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings_in((*key, index), item)


def _walk_conditions(key: Key, condition: Condition) -> Iterator[tuple[Key, Condition]]:
    yield key, condition
    for name, children in (("all", condition.all_), ("any", condition.any_)):
        for index, child in enumerate(children or []):
            yield from _walk_conditions((*key, name, index), child)
    if condition.not_ is not None:
        yield from _walk_conditions((*key, "not"), condition.not_)


def _strongly_connected(adjacency: dict[str, list[str]]) -> list[set[str]]:
    """Return the strongly connected components (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    counter = 0
    for root in adjacency:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = adjacency[node]
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components
