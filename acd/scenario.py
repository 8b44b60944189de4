"""Loading routing scenarios (YAML) for the simulator.

A scenario has `setup` (strategy, cross-queue rule, queues, agents, jump bounds) and `events`
(a list of `{t, op, ...}`). Queues are given as `queues: {name: settings}` where settings is a
mapping of `QueueSettings` fields or a list of callers already waiting
(`{caller, wait_s, priority}`), or as a single `queue: name`. Setup keys named like a
`QueueSettings` field apply to every queue. Any `expected` block is ignored here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from acd.model import (
    AcdSettings,
    CrossQueueRule,
    JumpSettings,
    QueueSettings,
    Strategy,
)

OPS = frozenset(
    {
        "join",
        "rejoin",
        "leave",
        "hangup",
        "priority_change",
        "callback",
        "agent_login",
        "agent_logout",
        "agent_available",
        "agent_state",
        "agent_answer",
        "agent_decline",
        "agent_hangup",
        "announce_positions",
    }
)
QUEUE_FIELDS = {f.name for f in dataclasses.fields(QueueSettings)} - {"name", "strategy"}
JUMP_FIELDS = {f.name for f in dataclasses.fields(JumpSettings)}


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class InitialCaller:
    caller: str
    queue: str
    wait_s: float
    priority: int
    skills: dict[str, int]


@dataclass(frozen=True, slots=True)
class SetupAgent:
    agent_id: str
    queues: tuple[str, ...]
    skills: dict[str, int]
    state: str


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    t: float
    op: str
    fields: Mapping[str, Any]


@dataclass(slots=True)
class Scenario:
    settings: AcdSettings
    agents: list[SetupAgent] = field(default_factory=list)
    callers: list[InitialCaller] = field(default_factory=list)
    events: list[ScenarioEvent] = field(default_factory=list)
    run_until_s: float | None = None


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file. Raises ScenarioError naming file and key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc}") from None
    try:
        return parse_scenario(data)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _skills(value: Any, where: str) -> dict[str, int]:
    if isinstance(value, list):
        return {str(name): 1 for name in value}
    return {str(name): int(level) for name, level in _mapping(value, where).items()}


def _queue_settings(
    name: str, value: Any, defaults: Mapping[str, Any], strategy: Strategy
) -> tuple[QueueSettings, list[InitialCaller]]:
    where = f"setup.queues.{name}"
    callers: list[InitialCaller] = []
    options: dict[str, Any] = dict(defaults)
    if isinstance(value, list):
        raw_callers: list[Any] = value
    else:
        mapping = dict(_mapping(value, where))
        raw_callers = list(mapping.pop("callers", []) or [])
        options.update(mapping)
    unknown = set(options) - QUEUE_FIELDS - {"strategy"}
    if unknown:
        raise ScenarioError(f"{where}: unknown settings {sorted(unknown)}")
    queue_strategy = Strategy.parse(str(options.pop("strategy", strategy.value)))
    for index, raw in enumerate(raw_callers):
        item = _mapping(raw, f"{where}[{index}]")
        if "caller" not in item:
            raise ScenarioError(f"{where}[{index}]: missing 'caller'")
        callers.append(
            InitialCaller(
                caller=str(item["caller"]),
                queue=name,
                wait_s=float(item.get("wait_s", 0)),
                priority=int(item.get("priority", 0)),
                skills=_skills(item.get("skills"), f"{where}[{index}].skills"),
            )
        )
    try:
        settings = QueueSettings(name=name, strategy=queue_strategy, **options)
    except TypeError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    return settings, callers


def parse_scenario(data: Any) -> Scenario:
    top = _mapping(data, "scenario")
    setup = _mapping(top.get("setup"), "setup")
    try:
        strategy = Strategy.parse(str(setup.get("strategy", "longest_idle")))
        rule = CrossQueueRule.parse(str(setup.get("cross_queue_rule", "priority_first")))
    except ValueError as exc:
        raise ScenarioError(f"setup: {exc}") from None
    defaults = {key: value for key, value in setup.items() if key in QUEUE_FIELDS}
    raw_queues = dict(_mapping(setup.get("queues"), "setup.queues"))
    if "queue" in setup:
        raw_queues.setdefault(str(setup["queue"]), {})
    if not raw_queues:
        raise ScenarioError("setup: no queue defined (use 'queues' or 'queue')")
    queues: dict[str, QueueSettings] = {}
    callers: list[InitialCaller] = []
    for name, value in raw_queues.items():
        settings, initial = _queue_settings(str(name), value, defaults, strategy)
        queues[settings.name] = settings
        callers.extend(initial)
    jump_options = dict(_mapping(setup.get("jump"), "setup.jump"))
    if set(jump_options) - JUMP_FIELDS:
        raise ScenarioError(
            f"setup.jump: unknown settings {sorted(set(jump_options) - JUMP_FIELDS)}"
        )
    acd_settings = AcdSettings(
        queues=queues, jump=JumpSettings(**jump_options), cross_queue_rule=rule
    )
    agents = []
    for index, raw in enumerate(setup.get("agents") or []):
        item = _mapping(raw, f"setup.agents[{index}]")
        if "id" not in item:
            raise ScenarioError(f"setup.agents[{index}]: missing 'id'")
        agent_queues = tuple(str(q) for q in item.get("queues", list(queues)))
        for queue in agent_queues:
            if queue not in queues:
                raise ScenarioError(f"setup.agents[{index}]: unknown queue {queue!r}")
        agents.append(
            SetupAgent(
                agent_id=str(item["id"]),
                queues=agent_queues,
                skills=_skills(item.get("skills"), f"setup.agents[{index}].skills"),
                state=str(item.get("state", "unavailable")),
            )
        )
    events = []
    for index, raw in enumerate(top.get("events") or []):
        item = dict(_mapping(raw, f"events[{index}]"))
        op = item.pop("op", None)
        if op not in OPS:
            raise ScenarioError(
                f"events[{index}]: unknown op {op!r}; expected one of {sorted(OPS)}"
            )
        if "t" not in item:
            raise ScenarioError(f"events[{index}]: missing 't'")
        events.append(ScenarioEvent(t=float(item.pop("t")), op=str(op), fields=item))
    events.sort(key=lambda event: event.t)
    until = setup.get("run_until_s")
    return Scenario(
        settings=acd_settings,
        agents=agents,
        callers=callers,
        events=events,
        run_until_s=None if until is None else float(until),
    )
