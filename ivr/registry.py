"""Map called numbers to flows loaded from a folder, with hot reload.

`reload()` rescans the folder: a new or changed file is validated and, when
valid, replaces the old version for new calls. Calls in progress keep the
`Flow` object they started with, because flows are immutable values. An
invalid edit is logged and ignored, so the last valid version stays in use.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from ivr.loader import FlowError, load_flow
from ivr.model import Flow

log = logging.getLogger("ivr.registry")

FLOW_SUFFIXES = (".yaml", ".yml")
# Flow test scripts (`voxgate test --script`) may live next to their flow. Files
# named `*.script.yaml` or `*.script.yml` are scripts, never flows, so the registry
# and `voxgate validate DIR` skip them.
SCRIPT_SUFFIXES = (".script.yaml", ".script.yml")


def is_flow_file(path: Path) -> bool:
    """True for a file name the flow folder treats as a flow (not a test script)."""
    return path.suffix in FLOW_SUFFIXES and not path.name.endswith(SCRIPT_SUFFIXES)


@dataclass(frozen=True, slots=True)
class _Loaded:
    flow: Flow
    mtime_ns: int
    size: int


class FlowRegistry:
    """Flows of one folder, by name and by called number.

    With `prewarm_intents`, loading a flow also builds its intent classifier,
    so the first caller turn does not wait for the examples to be embedded.
    """

    def __init__(self, folder: str | Path, *, prewarm_intents: bool = False) -> None:
        self.folder = Path(folder)
        self._prewarm_intents = prewarm_intents
        self._files: dict[Path, _Loaded] = {}
        self._rejected: dict[Path, tuple[int, int]] = {}
        self.errors: dict[Path, FlowError] = {}
        self._by_name: dict[str, Flow] = {}
        self._by_number: dict[str, Flow] = {}
        self._default: Flow | None = None
        self.reload()

    def reload(self) -> list[Path]:
        """Rescan the folder; returns the files whose flow changed."""
        changed: list[Path] = []
        present = (
            sorted(p for p in self.folder.iterdir() if is_flow_file(p) and p.is_file())
            if self.folder.is_dir()
            else []
        )
        for path in present:
            try:
                stat = path.stat()
            except OSError:
                continue
            signature = (stat.st_mtime_ns, stat.st_size)
            known = self._files.get(path)
            if known is not None and (known.mtime_ns, known.size) == signature:
                continue
            if self._rejected.get(path) == signature:
                continue
            try:
                flow = load_flow(path).with_base_dir(path.parent)
            except FlowError as exc:
                self._rejected[path] = signature
                self.errors[path] = exc
                log.warning(
                    "flow file %s is invalid (%d problems); %s",
                    path,
                    len(exc.diagnostics),
                    "keeping the previous version" if path in self._files else "flow not loaded",
                )
                continue
            if self._prewarm_intents and flow.intents:
                from ivr.intents import classifier_for_flow

                classifier_for_flow(flow)
            self._rejected.pop(path, None)
            self.errors.pop(path, None)
            self._files[path] = _Loaded(flow, *signature)
            changed.append(path)
            log.info("flow %s loaded from %s", flow.flow, path)
        for path in list(self._files):
            if path not in present:
                log.info("flow file %s removed", path)
                del self._files[path]
                changed.append(path)
        self._index()
        return changed

    def _index(self) -> None:
        by_name: dict[str, Flow] = {}
        by_number: dict[str, Flow] = {}
        default: Flow | None = None
        for path, loaded in sorted(self._files.items()):
            flow = loaded.flow
            if flow.flow in by_name:
                log.warning("flow name %s in %s is already used; file ignored", flow.flow, path)
                continue
            by_name[flow.flow] = flow
            for number in flow.numbers:
                if number in by_number:
                    log.warning(
                        "called number %s is listed by flows %s and %s; using %s",
                        number,
                        by_number[number].flow,
                        flow.flow,
                        by_number[number].flow,
                    )
                    continue
                by_number[number] = flow
            if flow.default and default is None:
                default = flow
        self._by_name, self._by_number, self._default = by_name, by_number, default

    def get(self, name: str) -> Flow | None:
        """Return the current flow called `name` (also the subflow resolver)."""
        return self._by_name.get(name)

    def for_number(self, called: str) -> Flow | None:
        """Return the flow for a called number, else the default flow, else None."""
        return self._by_number.get(called, self._default)

    def for_call(self, called: str, default_name: str) -> Flow | None:
        """Return the flow for a called number, else the flow `default_name`, else the default flow.

        A node's settings name its default flow, which wins over a flow file
        marked `default: true`.
        """
        matched = self._by_number.get(called)
        if matched is not None:
            return matched
        return self._by_name.get(default_name) or self._default

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    async def watch(self, interval_s: float = 2.0) -> None:
        """Reload every `interval_s` seconds until cancelled; the caller owns the task."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(self.reload)
            except OSError as exc:
                log.warning("flow folder %s could not be scanned: %s", self.folder, exc)
