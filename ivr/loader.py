"""Load flow files into validated `Flow` models with positioned errors.

Every problem becomes a `Diagnostic` that prints as
`file:line:column: key: bad value: message (hint: ...)`.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

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
        # A problem of the whole file (invalid YAML, unreadable) has no key or value to show.
        where = [part for part in (self.key, self.value) if part]
        text = ": ".join([f"{self.file}:{self.line}:{self.column}", *where, self.message])
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


STEP_TYPES = frozenset(
    {
        "say",
        "gather",
        "menu",
        "set",
        "branch",
        "http",
        "queue",
        "transfer",
        "record",
        "subflow",
        "return",
        "hangup",
    }
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


def _without_step_tag(loc: tuple[PathPart, ...]) -> tuple[PathPart, ...]:
    """Drop the step-type tag that pydantic puts after `steps.<id>` in error locations.

    The tag is not a key of the data. Left in, it makes `locate()` match the queue
    step's own `queue:` key, so every error of a queue step would be reported there.
    """
    if len(loc) >= 3 and loc[0] == "steps" and loc[2] in STEP_TYPES:
        return (*loc[:2], *loc[3:])
    return loc


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """List the pydantic models an annotation contains directly (through unions and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _tag_of(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("type")
    args = typing.get_args(field.annotation) if field is not None else ()
    return args[0] if len(args) == 1 else None


def _model_at(loc: tuple[PathPart, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """Find the model whose keys pydantic checks at `loc` (a raw error location), else None."""
    annotation: Any = root
    for part in loc:
        models = _models_in(annotation)
        if len(models) > 1 and isinstance(part, str):
            # A union tag (such as a step type) or the name of a union member.
            tagged = [m for m in models if _tag_of(m) == part or m.__name__ == part]
            if len(tagged) == 1:
                annotation = tagged[0]
                continue
            return None
        if len(models) == 1 and isinstance(part, str):
            fields = models[0].model_fields
            field = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
            if field is None:
                return None
            annotation = field.annotation
            continue
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Union or origin is types.UnionType:
            args = tuple(a for a in args if a is not type(None))
            if len(args) != 1:
                return None
            annotation = args[0]
            origin = typing.get_origin(annotation)
            args = typing.get_args(annotation)
        if origin in (list, tuple) and args:
            annotation = args[0]
        elif origin is dict and len(args) == 2:
            annotation = args[1]
        else:
            return None
    models = _models_in(annotation)
    return models[0] if len(models) == 1 else None


def unknown_key_hint(loc: tuple[PathPart, ...], root: type[BaseModel]) -> str:
    """Build the hint for an unknown key at `loc`: the closest allowed key, if one is close."""
    hint = _HINTS["extra_forbidden"]
    if not loc or not isinstance(loc[-1], str):
        return hint
    model = _model_at(loc[:-1], root)
    if model is None:
        return hint
    allowed = [f.alias or name for name, f in model.model_fields.items()]
    close = difflib.get_close_matches(loc[-1], allowed, n=1)
    return f"did you mean '{close[0]}'?" if close else hint


def _pydantic_diagnostics(
    source: SourceMap, error: ValidationError, root: type[BaseModel] = Flow
) -> list[Diagnostic]:
    """Turn a validation error of `root` (the model of the whole file) into diagnostics."""
    result = []
    for item in error.errors(include_url=False):
        raw = tuple(item["loc"])
        loc = _without_step_tag(raw)
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
        hint = unknown_key_hint(raw, root) if kind == "extra_forbidden" else _HINTS.get(kind, "")
        result.append(source.diagnostic(loc, message, hint=hint, value=value))
    return result


def parse_flow(text: str, file: str) -> tuple[Flow, SourceMap]:
    """Parse and validate flow text; raise FlowError with positioned diagnostics."""
    try:
        data, marks = load_with_marks(text)
    except YamlSyntaxError as exc:
        mark = exc.mark or Mark(1, 1)
        raise FlowError([Diagnostic(file, mark.line, mark.column, "", "", exc.message)]) from exc
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
        raise FlowError([Diagnostic(file, 1, 1, "", "", str(exc))]) from exc
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
