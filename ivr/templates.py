"""A small sandboxed template language for prompts, variables and URLs.

`{{ name }}`, `{{ order.status }}`, `{{ items.0 }}` and filters such as
`{{ name | default('caller') | upper }}`. Lookups only index dicts and lists:
there is no attribute access, no call and no name that starts with an
underscore, so a flow cannot reach Python objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_SEGMENT = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]*|[0-9]+)$")
_FILTER = re.compile(r"^\s*([a-z_]+)\s*(?:\(\s*(.*?)\s*\))?\s*$", re.DOTALL)
_LITERAL = re.compile(r"^(?:'([^']*)'|\"([^\"]*)\"|(-?[0-9]+(?:\.[0-9]+)?))$")
MAX_OUTPUT_CHARS = 10_000


class TemplateError(ValueError):
    """A template is malformed or names a variable that is not set."""


@dataclass(frozen=True, slots=True)
class _Expression:
    path: tuple[str, ...]
    filters: tuple[tuple[str, str | float | None], ...]


def _parse_literal(text: str) -> str | float | None:
    if not text:
        return None
    match = _LITERAL.match(text)
    if match is None:
        raise TemplateError(f"filter argument must be a quoted string or a number, not {text!r}")
    if match.group(3) is not None:
        return float(match.group(3))
    return match.group(1) if match.group(1) is not None else match.group(2)


def _parse_expression(source: str) -> _Expression:
    parts = source.split("|")
    name = parts[0].strip()
    segments = tuple(name.split("."))
    if not name or not all(_SEGMENT.match(s) for s in segments) or segments[0].isdigit():
        raise TemplateError(
            f"invalid variable name {name!r}: use letters, digits and _, joined by dots"
        )
    filters = []
    for raw in parts[1:]:
        match = _FILTER.match(raw)
        if match is None or match.group(1) not in FILTERS:
            raise TemplateError(f"unknown filter {raw.strip()!r}; known: {', '.join(FILTERS)}")
        filters.append((match.group(1), _parse_literal(match.group(2) or "")))
    return _Expression(segments, tuple(filters))


def _spell_digits(value: Any, _arg: Any) -> str:
    return " ".join(str(value))


def _mask(value: Any, _arg: Any) -> str:
    text = str(value)
    return "*" * max(0, len(text) - 4) + text[-4:]


FILTERS: dict[str, Callable[[Any, Any], Any]] = {
    "default": lambda value, arg: value,
    "upper": lambda value, _arg: str(value).upper(),
    "lower": lambda value, _arg: str(value).lower(),
    "title": lambda value, _arg: str(value).title(),
    "length": lambda value, _arg: len(value) if isinstance(value, str | list | dict) else 0,
    "digits": _spell_digits,
    "mask": _mask,
    "round": lambda value, arg: round(float(value), int(arg or 0)),
}


def _lookup(variables: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = variables
    for segment in path:
        if isinstance(current, Mapping) and segment in current:
            current = current[segment]
        elif isinstance(current, list) and segment.isdigit() and int(segment) < len(current):
            current = current[int(segment)]
        else:
            raise KeyError(segment)
    return current


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Template:
    """A parsed template. Parsing fails early on bad syntax, rendering on unset variables."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._pieces: list[str | _Expression] = []
        position = 0
        for match in _TAG.finditer(source):
            self._pieces.append(source[position : match.start()])
            self._pieces.append(_parse_expression(match.group(1)))
            position = match.end()
        tail = source[position:]
        if "{{" in tail or "}}" in tail:
            raise TemplateError("unbalanced '{{' or '}}'")
        self._pieces.append(tail)

    @property
    def is_constant(self) -> bool:
        return all(isinstance(p, str) for p in self._pieces)

    def variables(self) -> Iterator[tuple[str, bool]]:
        """Yield each referenced root variable and whether a `default` filter covers it."""
        for piece in self._pieces:
            if isinstance(piece, _Expression):
                yield piece.path[0], any(name == "default" for name, _ in piece.filters)

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """Return the value of a template that is a single `{{ ... }}`, keeping its type."""
        expressions = [p for p in self._pieces if isinstance(p, _Expression)]
        if len(expressions) == 1 and all(p == "" for p in self._pieces if isinstance(p, str)):
            return self._value(expressions[0], variables)
        return self.render(variables)

    def render(self, variables: Mapping[str, Any], *, url_quote: bool = False) -> str:
        """Substitute every expression.

        With `url_quote`, each substituted value is percent-encoded, except an
        expression at the very start of the template, which is the base URL
        (scheme, host and path prefix) and must start with http:// or https://.
        """
        out = []
        for index, piece in enumerate(self._pieces):
            if isinstance(piece, str):
                out.append(piece)
                continue
            text = _to_text(self._value(piece, variables))
            if url_quote and index == 1 and self._pieces[0] == "":
                if not text.startswith(("http://", "https://")):
                    raise TemplateError("a URL template must start with http:// or https://")
                out.append(text)
                continue
            out.append(quote(text, safe="") if url_quote else text)
        result = "".join(out)
        if len(result) > MAX_OUTPUT_CHARS:
            raise TemplateError(f"rendered text is longer than {MAX_OUTPUT_CHARS} characters")
        return result

    @staticmethod
    def _value(expression: _Expression, variables: Mapping[str, Any]) -> Any:
        try:
            value = _lookup(variables, expression.path)
            missing = False
        except KeyError:
            value, missing = None, True
        for name, arg in expression.filters:
            if name == "default":
                if missing or value is None or value == "":
                    value, missing = arg, False
                continue
            if missing:
                break
            value = FILTERS[name](value, arg)
        if missing:
            raise TemplateError(f"variable '{'.'.join(expression.path)}' is not set")
        return value


def render(source: str, variables: Mapping[str, Any], *, url_quote: bool = False) -> str:
    return Template(source).render(variables, url_quote=url_quote)
