"""The step graph of a flow: edges for the validator, Mermaid and SVG for people."""

from __future__ import annotations

import html
import math
import shutil
import subprocess
from dataclasses import dataclass

from ivr.model import (
    TERMINAL_TYPES,
    BranchStep,
    Flow,
    GatherStep,
    HttpStep,
    MenuStep,
    QueueStep,
    TransferStep,
)
from ivr.yamlmarks import PathPart


@dataclass(frozen=True, slots=True)
class Edge:
    """A possible move from `source` to `target`; `key` is the YAML path that declares it."""

    source: str
    target: str
    label: str
    key: tuple[PathPart, ...]


def step_edges(flow: Flow, step_id: str) -> list[Edge]:
    """Return every move out of one step, including the fall-through to the next step."""
    step = flow.steps[step_id]
    base: tuple[PathPart, ...] = ("steps", step_id)
    edges: list[Edge] = []

    def add(target: str | None, label: str, *key: PathPart) -> None:
        if target is not None:
            edges.append(Edge(step_id, target, label, (*base, *key)))

    if isinstance(step, GatherStep | MenuStep):
        for outcome, target in step.on.items():
            add(target, outcome, "on", outcome)
    if isinstance(step, MenuStep):
        for index, option in enumerate(step.options):
            label = option.key or option.intent or (option.phrases[0] if option.phrases else "")
            add(option.goto, label, "options", index, "goto")
    if isinstance(step, BranchStep):
        for index, case in enumerate(step.cases):
            add(case.goto, f"case {index + 1}", "cases", index, "goto")
        add(step.otherwise, "otherwise", "otherwise")
    if isinstance(step, HttpStep | QueueStep | TransferStep):
        add(step.on_error, "error", "on_error")
    if step.type in TERMINAL_TYPES:
        return edges
    explicit = getattr(step, "next", None)
    if explicit is not None:
        add(explicit, "next", "next")
    elif falls_through(step):
        add(flow.following(step_id), "next", "type")
    return edges


def falls_through(step: object) -> bool:
    """Return whether a step without `next` may continue with the following step."""
    if isinstance(step, MenuStep):
        return False
    if isinstance(step, BranchStep):
        return step.otherwise is None
    if isinstance(step, GatherStep):
        value_keys = [k for k in step.on if k not in ("no_input", "no_match", "error")]
        return "default" not in step.on and not value_keys
    return True


def flow_edges(flow: Flow) -> list[Edge]:
    edges: list[Edge] = []
    for step_id in flow.steps:
        edges.extend(step_edges(flow, step_id))
    for index, rule in enumerate(flow.satisfaction):
        edges.append(
            Edge("(satisfaction)", rule.goto, "low satisfaction", ("satisfaction", index, "goto"))
        )
    return edges


def _node_id(step_id: str) -> str:
    return "s_" + "".join(c if c.isalnum() else "_" for c in step_id)


def to_mermaid(flow: Flow) -> str:
    """Return the flow as a Mermaid flowchart."""
    lines = ["flowchart TD", f'  start(("{flow.flow}")) --> {_node_id(flow.start_step)}']
    for step_id, step in flow.steps.items():
        shape = ("{{", "}}") if step.type in ("gather", "menu", "branch") else ("[", "]")
        if step.type in TERMINAL_TYPES:
            shape = ("([", "])")
        text = f"{step_id}<br/>{step.type}".replace('"', "'")
        lines.append(f'  {_node_id(step_id)}{shape[0]}"{text}"{shape[1]}')
    for edge in flow_edges(flow):
        if edge.source.startswith("("):
            continue
        label = edge.label.replace('"', "'").replace("|", "/")
        lines.append(f'  {_node_id(edge.source)} -->|"{label}"| {_node_id(edge.target)}')
    return "\n".join(lines) + "\n"


def to_dot(flow: Flow) -> str:
    """Return the flow in Graphviz DOT."""

    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"digraph {quote(flow.flow)} {{", "  rankdir=TB; node [fontname=Helvetica];"]
    for step_id, step in flow.steps.items():
        shape = "diamond" if step.type in ("gather", "menu", "branch") else "box"
        if step.type in TERMINAL_TYPES:
            shape = "oval"
        lines.append(
            f"  {quote(step_id)} [label={quote(step_id + chr(10) + step.type)} shape={shape}];"
        )
    for edge in flow_edges(flow):
        if not edge.source.startswith("("):
            lines.append(
                f"  {quote(edge.source)} -> {quote(edge.target)} [label={quote(edge.label)}];"
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(flow: Flow) -> str:
    """Return an SVG drawing: Graphviz `dot` when installed, else a simple layered layout."""
    dot = shutil.which("dot")
    if dot is not None:
        try:
            done = subprocess.run(
                [dot, "-Tsvg"],
                input=to_dot(flow).encode(),
                capture_output=True,
                timeout=30,
                check=True,
            )
            return done.stdout.decode()
        except (subprocess.SubprocessError, OSError):
            pass
    return _simple_svg(flow)


def _simple_svg(flow: Flow) -> str:
    depth: dict[str, int] = {flow.start_step: 0}
    frontier = [flow.start_step]
    adjacency: dict[str, list[str]] = {}
    for edge in flow_edges(flow):
        adjacency.setdefault(edge.source, []).append(edge.target)
    while frontier:
        reached = []
        for node in frontier:
            for target in adjacency.get(node, []):
                if target in flow.steps and target not in depth:
                    depth[target] = depth[node] + 1
                    reached.append(target)
        frontier = reached

    for step_id in flow.steps:
        depth.setdefault(step_id, max(depth.values(), default=0) + 1)
    rows: dict[int, list[str]] = {}
    for step_id in flow.steps:
        rows.setdefault(depth[step_id], []).append(step_id)

    box_w, box_h, gap_x, gap_y = 170, 44, 30, 60
    width = max(len(r) for r in rows.values()) * (box_w + gap_x) + gap_x
    height = (max(rows) + 1) * (box_h + gap_y) + gap_y
    position: dict[str, tuple[float, float]] = {}
    for row, ids in rows.items():
        for index, step_id in enumerate(ids):
            position[step_id] = (gap_x + index * (box_w + gap_x), gap_y + row * (box_h + gap_y))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="Helvetica" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
    ]
    for edge in flow_edges(flow):
        if edge.source not in position or edge.target not in position:
            continue
        (x1, y1), (x2, y2) = position[edge.source], position[edge.target]
        start = (x1 + box_w / 2, y1 + box_h)
        end = (x2 + box_w / 2, y2)
        if math.isclose(start[1], end[1] + box_h) or y2 <= y1:
            end = (x2 + box_w, y2 + box_h / 2)
        parts.append(
            f'<line x1="{start[0]}" y1="{start[1]}" x2="{end[0]}" y2="{end[1]}" '
            'stroke="#555" marker-end="url(#arrow)"/>'
        )
        mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        parts.append(
            f'<text x="{mid[0]}" y="{mid[1]}" fill="#335">{html.escape(edge.label)}</text>'
        )
    for step_id, (x, y) in position.items():
        step = flow.steps[step_id]
        fill = "#e8f0ff" if step.type in ("gather", "menu", "branch") else "#f4f4f4"
        parts.append(
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" '
            f'fill="{fill}" stroke="#333"/>'
        )
        parts.append(f'<text x="{x + 8}" y="{y + 18}">{html.escape(step_id)}</text>')
        parts.append(f'<text x="{x + 8}" y="{y + 34}" fill="#666">{html.escape(step.type)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
