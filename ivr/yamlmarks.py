"""YAML to plain Python values, keeping the line and column of every key.

PyYAML's constructors drop source positions, so this module composes the node
graph and builds the values itself, recording a `Mark` for each path. Keys
are always strings (YAML 1.1 would read a key `on` as True), and only `true`
and `false` are booleans (YAML 1.1 would read `yes`, `no`, `on` and `off` as
booleans, which breaks phrase lists).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

PathPart = str | int
Path = tuple[PathPart, ...]

_BOOL_TAG = "tag:yaml.org,2002:bool"
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
MAX_DOCUMENT_BYTES = 1_000_000
MAX_NODES = 100_000


@dataclass(frozen=True, slots=True)
class Mark:
    """A 1-based line and column in a source file."""

    line: int
    column: int


class YamlSyntaxError(ValueError):
    """The text is not a YAML document this loader accepts."""

    def __init__(self, message: str, mark: Mark | None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def _mark_of(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self) -> None:
        self.marks: dict[Path, Mark] = {}
        self._scalars = yaml.SafeLoader("")
        self._count = 0

    def build(self, node: yaml.Node, path: Path) -> Any:
        self._count += 1
        if self._count > MAX_NODES:
            raise YamlSyntaxError(f"document has more than {MAX_NODES} nodes", _mark_of(node))
        self.marks.setdefault(path, _mark_of(node))
        if isinstance(node, yaml.MappingNode):
            self._check_tag(node, _MAP_TAG)
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, _SEQ_TAG)
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        if node.tag == _BOOL_TAG and node.value.lower() not in ("true", "false"):
            return node.value
        try:
            return self._scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise YamlSyntaxError(f"invalid scalar: {problem}", _mark_of(node)) from exc

    @staticmethod
    def _check_tag(node: yaml.Node, expected: str) -> None:
        if node.tag != expected:
            raise YamlSyntaxError(f"unsupported YAML tag {node.tag}", _mark_of(node))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlSyntaxError("mapping keys must be plain scalars", _mark_of(key_node))
            key = str(key_node.value)
            if key == "<<" and key_node.tag != _STR_TAG:
                raise YamlSyntaxError(
                    "merge keys (<<) are not supported; repeat the keys instead",
                    _mark_of(key_node),
                )
            if key in result:
                raise YamlSyntaxError(f"duplicate key '{key}'", _mark_of(key_node))
            self.marks[(*path, key)] = _mark_of(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result


def load_with_marks(text: str) -> tuple[Any, dict[Path, Mark]]:
    """Parse one YAML document into plain values and a mark for every path.

    Raises YamlSyntaxError for invalid YAML, several documents, duplicate keys,
    merge keys or documents larger than MAX_DOCUMENT_BYTES.
    """
    if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise YamlSyntaxError(f"file is larger than {MAX_DOCUMENT_BYTES} bytes", None)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark is not None else None
        raise YamlSyntaxError(f"invalid YAML: {exc.problem}", where) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc}", None) from exc
    if node is None:
        return None, {}
    builder = _Builder()
    value = builder.build(node, ())
    return value, builder.marks


def locate(
    data: Any, marks: dict[Path, Mark], loc: tuple[PathPart, ...]
) -> tuple[Path, Mark | None]:
    """Map a validation error location onto the deepest path that exists in `data`.

    Pydantic inserts union tags and aliases into locations; parts that do not
    exist in the data are skipped.
    """
    path: Path = ()
    current = data
    for part in loc:
        if isinstance(current, dict) and isinstance(part, str):
            key = part.rstrip("_") if part not in current and part.rstrip("_") in current else part
            if key in current:
                path = (*path, key)
                current = current[key]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path = (*path, part)
            current = current[part]
    mark = marks.get(path)
    while mark is None and path:
        path = path[:-1]
        mark = marks.get(path)
    return path, mark
