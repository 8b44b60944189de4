"""Scripted flow tests: turns in, expected steps, variables and prompts out.

A script is a YAML file with `cases`. Each case gives the caller's turns
(words, `#digits`, null for silence) and what must hold afterwards. An
optional `crm` block serves canned JSON responses from a local aiohttp server
on 127.0.0.1 while the script runs. The flow reads that server's address from
the variable `crm_url`.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import Field, ValidationError

from ivr.conditions import MISSING, lookup_path
from ivr.engine import FlowResolver, IvrSession, SessionResult
from ivr.events import IvrEvent
from ivr.loader import Diagnostic, FlowError, SourceMap, _pydantic_diagnostics
from ivr.model import BranchStep, Condition, Flow, FlowModel, QueueStep, SubflowStep
from ivr.prompts import SilentSynthesizer
from ivr.textchannel import TextChannel, scripted
from ivr.yamlmarks import Mark, YamlSyntaxError, load_with_marks


class CannedResponse(FlowModel):
    status: int = Field(default=200, ge=100, le=599)
    json_body: Any = Field(default=None, alias="json")
    text: str | None = Field(default=None, description="Raw body, sent instead of json.")


class ExpectedQueue(FlowModel):
    """The fields of the queue request that a case checks; unset fields are not checked."""

    queue: str | None = None
    priority: int | None = None
    skills: list[str] | None = None
    reason: str | None = None
    attributes: dict[str, Any] | None = None


class Expectation(FlowModel):
    path: list[str] | None = Field(default=None, description="The exact step path.")
    steps: list[str] | None = Field(default=None, description="Steps visited, in this order.")
    not_steps: list[str] | None = Field(default=None, description="Steps never visited.")
    outcome: str | None = None
    variables: dict[str, Any] | None = None
    prompts: list[str] | None = Field(
        default=None, description="Texts that must appear in the prompts, in order."
    )
    queue: ExpectedQueue | None = None
    transfer: str | None = None
    recording: list[str] | None = Field(
        default=None,
        description="The call recording's state after each recording option, in order.",
    )


class ScriptCase(FlowModel):
    name: str
    turns: list[str | None] = Field(default_factory=list)
    caller: str | None = None
    called: str | None = None
    now: dt.datetime | None = Field(default=None, description="Wall clock for time branches.")
    variables: dict[str, Any] = Field(default_factory=dict)
    expect: Expectation


class Script(FlowModel):
    caller: str = "+15550100001"
    called: str = "1000"
    crm: dict[str, CannedResponse] = Field(default_factory=dict)
    cases: list[ScriptCase] = Field(min_length=1)


@dataclass
class CaseReport:
    name: str
    problems: list[str] = field(default_factory=list)
    result: SessionResult | None = None

    @property
    def passed(self) -> bool:
        return not self.problems


def load_script(path: Path) -> Script:
    """Read and validate a script; raises FlowError with positioned diagnostics."""
    script, _ = load_script_with_source(path)
    return script


def load_script_with_source(path: Path) -> tuple[Script, SourceMap]:
    """Read and validate a script, returning the source map for positioned warnings."""
    file = str(path)
    try:
        data, marks = load_with_marks(path.read_text(encoding="utf-8"))
    except YamlSyntaxError as exc:
        mark = exc.mark or Mark(1, 1)
        raise FlowError([Diagnostic(file, mark.line, mark.column, "", "", exc.message)]) from exc
    except OSError as exc:
        raise FlowError([Diagnostic(file, 1, 1, "", "", str(exc))]) from exc
    source = SourceMap(file, data, marks)
    try:
        return Script.model_validate(data), source
    except ValidationError as exc:
        raise FlowError(_pydantic_diagnostics(source, exc, Script)) from exc


def clock_steps(flow: Flow, flows: FlowResolver | None = None) -> list[str]:
    """List the steps whose conditions test the time of day, as `flow/step`.

    Subflows that `flows` resolves are searched too, each once.
    """
    found: list[str] = []
    pending = [flow]
    seen = {flow.flow}
    while pending:
        current = pending.pop(0)
        for step_id, step in current.steps.items():
            conditions = [case.if_ for case in step.cases] if isinstance(step, BranchStep) else []
            if isinstance(step, QueueStep):
                conditions = [rule.if_ for rule in step.rules]
            if any(_tests_time(condition) for condition in conditions):
                found.append(f"{current.flow}/{step_id}")
            if isinstance(step, SubflowStep) and flows is not None and step.flow not in seen:
                seen.add(step.flow)
                child = flows(step.flow)
                if child is not None:
                    pending.append(child)
    return found


def _tests_time(condition: Condition) -> bool:
    if condition.time is not None:
        return True
    children = [*(condition.all_ or []), *(condition.any_ or [])]
    if condition.not_ is not None:
        children.append(condition.not_)
    return any(_tests_time(child) for child in children)


def clock_warnings(
    script: Script, source: SourceMap, flow: Flow, flows: FlowResolver | None = None
) -> list[Diagnostic]:
    """Build a warning for each case without `now` when the flow tests the time of day.

    Such a case reads the real clock, so whether it passes depends on when it runs.
    """
    steps = clock_steps(flow, flows)
    if not steps:
        return []
    listed = ", ".join(steps[:3]) + (", ..." if len(steps) > 3 else "")
    return [
        source.diagnostic(
            ("cases", index, "name"),
            f"case has no 'now' but the flow tests the time of day ({listed}), "
            "so its result depends on when it runs",
            hint="set 'now:' to a fixed time, such as 2026-12-07T15:00:00Z",
            severity="warning",
        )
        for index, case in enumerate(script.cases)
        if case.now is None
    ]


@asynccontextmanager
async def canned_server(responses: dict[str, CannedResponse]) -> AsyncIterator[str]:
    """Serve `responses` by path on 127.0.0.1; yields the base URL."""

    async def handle(request: web.Request) -> web.Response:
        canned = responses.get(request.path)
        if canned is None:
            return web.json_response({"error": "not found"}, status=404)
        if canned.text is not None:
            return web.Response(status=canned.status, text=canned.text)
        return web.json_response(canned.json_body, status=canned.status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    await web.SockSite(runner, listener).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _contains_in_order(expected: list[str], actual: list[str]) -> bool:
    position = 0
    for item in actual:
        if position < len(expected) and expected[position] in item:
            position += 1
    return position == len(expected)


def check_case(expect: Expectation, result: SessionResult) -> list[str]:
    """Return one readable line per expectation that does not hold."""
    problems: list[str] = []

    def differ(subject: str, expected: Any, actual: Any) -> None:
        problems.append(f"{subject}:\n    expected {expected!r}\n    actual   {actual!r}")

    if expect.path is not None and expect.path != result.path:
        differ("path", expect.path, result.path)
    if expect.steps is not None and not _subsequence(expect.steps, result.path):
        differ("steps (in order)", expect.steps, result.path)
    for step in expect.not_steps or []:
        if step in result.path:
            differ(f"step {step} not visited", "absent", result.path)
    if expect.outcome is not None and expect.outcome != result.outcome.value:
        differ("outcome", expect.outcome, result.outcome.value)
    for name, value in (expect.variables or {}).items():
        actual = lookup_path(result.variables, name)
        if actual is MISSING:
            actual = "(unset)"
        if actual != value and str(actual) != str(value):
            differ(f"variable {name}", value, actual)
    if expect.prompts is not None and not _contains_in_order(expect.prompts, result.prompts):
        differ("prompts (in order, substrings)", expect.prompts, result.prompts)
    if expect.queue is not None:
        request = result.queue_request
        expected_queue = expect.queue.model_dump(exclude_unset=True)
        if request is None:
            differ("queue", expected_queue, None)
        else:
            actual_queue = {
                "queue": request.queue,
                "priority": request.priority,
                "skills": list(request.skills),
                "reason": request.reason,
                "attributes": dict(request.attributes),
            }
            for key, value in expected_queue.items():
                if actual_queue.get(key) != value:
                    differ(f"queue {key}", value, actual_queue.get(key))
    if expect.transfer is not None and expect.transfer != result.transfer_target:
        differ("transfer", expect.transfer, result.transfer_target)
    if expect.recording is not None and expect.recording != result.recording:
        differ("recording states", expect.recording, result.recording)
    return problems


def _subsequence(expected: list[str], actual: list[str]) -> bool:
    iterator = iter(actual)
    return all(any(step == item for item in iterator) for step in expected)


async def run_script(
    script: Script,
    flow: Flow,
    *,
    flows: FlowResolver | None = None,
    events: list[IvrEvent] | None = None,
) -> list[CaseReport]:
    """Run every case of `script` against `flow`."""
    reports: list[CaseReport] = []
    async with canned_server(script.crm) as crm_url, aiohttp.ClientSession() as http:
        for case in script.cases:
            channel = TextChannel(
                scripted(case.turns),
                call_id=f"script-{len(reports) + 1}",
                caller=case.caller or script.caller,
                called=case.called or script.called,
            )
            clock_now = _fixed_clock(case.now) if case.now is not None else None
            session = IvrSession(
                flow,
                channel,
                SilentSynthesizer(),
                events=events.append if events is not None else None,
                flows=flows,
                http=http,
                clock=channel.clock,
                now=clock_now,
            )
            session.variables["crm_url"] = crm_url
            session.variables.update(case.variables)
            result = await session.run()
            reports.append(CaseReport(case.name, check_case(case.expect, result), result))
    return reports


def _fixed_clock(moment: dt.datetime) -> Callable[[], dt.datetime]:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return lambda: aware


def format_reports(reports: list[CaseReport], source: SourceMap | None = None) -> str:
    """Format one PASS or FAIL line per case, with its problems, and a total.

    With the script's `source`, a failed case's line also names the file and line of the case.
    """
    lines = []
    for index, report in enumerate(reports):
        head = f"{'PASS' if report.passed else 'FAIL'} {report.name}"
        if not report.passed and source is not None:
            where = source.diagnostic(("cases", index, "name"), "")
            head += f" ({where.file}:{where.line})"
        lines.append(head)
        for problem in report.problems:
            lines.append("  " + problem.replace("\n", "\n  "))
    passed = sum(r.passed for r in reports)
    lines.append(f"{passed} passed, {len(reports) - passed} failed")
    return "\n".join(lines) + "\n"
