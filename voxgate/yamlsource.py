"""YAML loading that remembers where each key came from.

Settings and flow errors must name the file, line and column of the bad
value. PyYAML's composer keeps a mark on every node, so the document is
composed once, converted to plain Python values, and a side table maps each
key path (a tuple of keys and list indices) to its source position.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """A 1-based line and column in a named file."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class YamlSourceError(ValueError):
    """Raised when a file is not readable YAML; the message names file, line and column."""


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """Plain values of one YAML document with the position of every key path."""

    data: Any
    positions: dict[KeyPath, SourcePosition]
    file: str

    def position(self, path: KeyPath) -> SourcePosition:
        """Return the position of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return SourcePosition(self.file, 1, 1)


def load_yaml(text: str, file: str) -> YamlDocument:
    """Parse one YAML document from `text`, keeping key positions.

    Raises YamlSourceError for syntax errors and for duplicate keys, which
    PyYAML would otherwise accept by keeping the last value.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        raise YamlSourceError(f"{where}: invalid YAML: {exc.problem}") from None
    positions: dict[KeyPath, SourcePosition] = {}
    if node is None:
        return YamlDocument(None, positions, file)
    data = _convert(node, (), positions, file)
    return YamlDocument(data, positions, file)


def load_yaml_file(path: Path) -> YamlDocument:
    """Read and parse `path`; raises YamlSourceError when it is missing or invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlSourceError(f"{path}: cannot read file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise YamlSourceError(f"{path}: file is not valid UTF-8") from None
    return load_yaml(text, str(path))


def _mark(node: yaml.Node, file: str) -> SourcePosition:
    return SourcePosition(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(
    node: yaml.Node, path: KeyPath, positions: dict[KeyPath, SourcePosition], file: str
) -> Any:
    positions.setdefault(path, _mark(node, file))
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _construct_scalar(key_node)
            if isinstance(key, list | dict):
                where = _mark(key_node, file)
                raise YamlSourceError(f"{where}: a mapping key must be a scalar")
            if key in result:
                where = _mark(key_node, file)
                raise YamlSourceError(f"{where}: duplicate key {key!r}")
            child = (*path, key)
            positions[child] = _mark(key_node, file)
            result[key] = _convert(value_node, child, positions, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*path, index), positions, file) for index, item in enumerate(node.value)
        ]
    return _construct_scalar(node)


def _construct_scalar(node: yaml.Node) -> Any:
    """Build the Python value of one scalar node with the safe loader's type rules."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
