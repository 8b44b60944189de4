"""Load flow files into validated `Flow` models with positioned errors.

Every problem becomes a `Diagnostic` that prints as
`file:line:column: key: bad value: message (hint: ...)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ivr.model import Flow
from ivr.yamlmarks import Mark, PathPart, YamlSyntaxError, load_with_marks, locate

MAX_VALUE_CHARS = 60


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a flow file."""

    file: str
    line: int
    column: int
    key: str
    value: str
    message: str
    hint: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.key}: {self.value}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        if self.severity != "error":
            text = f"{text} [{self.severity}]"
        return text


class FlowError(ValueError):
    """A flow file could not be loaded; `diagnostics` lists every problem found."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("\n".join(str(d) for d in diagnostics))
        self.diagnostics = diagnostics


def format_key(path: tuple[PathPart, ...]) -> str:
    if not path:
        return "(file)"
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = part
    return text


def format_value(value: Any) -> str:
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = repr(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 3] + "..."
    return text


def _value_at(data: Any, path: tuple[PathPart, ...]) -> Any:
    current = data
    for part in path:
        current = current[part]
    return current


@dataclass(frozen=True, slots=True)
class SourceMap:
    """The parsed data of a flow file and the position of each path in it."""

    file: str
    data: Any
    marks: dict[tuple[PathPart, ...], Mark]

    def diagnostic(
        self,
        path: tuple[PathPart, ...],
        message: str,
        *,
        hint: str = "",
        severity: str = "error",
        value: Any = ...,
    ) -> Diagnostic:
        """Build a diagnostic for `path`, positioned at the deepest known mark."""
        found, mark = locate(self.data, self.marks, path)
        if value is ...:
            value = _value_at(self.data, found) if found else "(file)"
        shown = value if isinstance(value, str) and value.startswith("(") else format_value(value)
        return Diagnostic(
            file=self.file,
            line=mark.line if mark else 1,
            column=mark.column if mark else 1,
            key=format_key(found if found else path),
            value=shown,
            message=message,
            hint=hint,
            severity=severity,
        )


_HINTS = {
    "extra_forbidden": "remove the key or check its spelling",
    "union_tag_invalid": (
        "type must be one of say, gather, menu, set, branch, http, queue, transfer, "
        "record, subflow, return, hangup"
    ),
    "union_tag_not_found": "add 'type:' to the step",
    "missing": "add the key",
}


def _pydantic_diagnostics(source: SourceMap, error: ValidationError) -> list[Diagnostic]:
    result = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        kind = item["type"]
        if kind == "union_tag_invalid":
            loc = (*loc, "type")
            message = "unknown step type"
        elif kind == "union_tag_not_found":
            message = "missing key 'type'"
        path, _ = locate(source.data, source.marks, loc)
        value: Any
        if kind == "union_tag_not_found":
            value = "(missing)"
        elif kind == "missing":
            value = "(missing)"
            message = f"missing key '{loc[-1]}'"
        elif kind == "extra_forbidden":
            value = item.get("input", ...)
            message = f"unknown key '{loc[-1]}'"
        else:
            value = _value_at(source.data, path) if path else "(file)"
        result.append(source.diagnostic(loc, message, hint=_HINTS.get(kind, ""), value=value))
    return result


def parse_flow(text: str, file: str) -> tuple[Flow, SourceMap]:
    """Parse and validate flow text; raise FlowError with positioned diagnostics."""
    try:
        data, marks = load_with_marks(text)
    except YamlSyntaxError as exc:
        mark = exc.mark or Mark(1, 1)
        raise FlowError(
            [Diagnostic(file, mark.line, mark.column, "(file)", "(yaml)", exc.message)]
        ) from exc
    source = SourceMap(file, data, marks)
    if not isinstance(data, dict):
        raise FlowError(
            [source.diagnostic((), "a flow file must be a mapping", hint="start with 'flow: NAME'")]
        )
    try:
        flow = Flow.model_validate(data)
    except ValidationError as exc:
        raise FlowError(_pydantic_diagnostics(source, exc)) from exc
    return flow, source


def load_flow_with_source(path: str | Path) -> tuple[Flow, SourceMap]:
    """Read and validate a flow file, returning the source map for static checks."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError([Diagnostic(file, 1, 1, "(file)", "(unreadable)", str(exc))]) from exc
    flow, source = parse_flow(text, file)
    return flow.with_base_dir(Path(path).parent), source


def load_flow(path: str | Path) -> Flow:
    """Load one flow file, run the static checks, and return the flow.

    Raises FlowError listing every schema error, or every static-check error
    when the schema is valid. Warnings do not raise.
    """
    from ivr.validator import check_flow

    flow, source = load_flow_with_source(path)
    errors = [d for d in check_flow(flow, source, Path(path).parent) if d.severity == "error"]
    if errors:
        raise FlowError(errors)
    return flow
