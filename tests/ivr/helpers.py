"""Run flows on the text channel and keep what happened."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.engine import IvrSession, SessionResult
from ivr.events import EventKind, IvrEvent
from ivr.loader import load_flow, parse_flow
from ivr.model import Flow
from ivr.prompts import SilentSynthesizer
from ivr.textchannel import TextChannel, scripted


@dataclass
class Run:
    result: SessionResult
    events: list[IvrEvent] = field(default_factory=list)
    channel: TextChannel | None = None

    def of_kind(self, kind: EventKind) -> list[IvrEvent]:
        return [e for e in self.events if e.kind == kind]


def flow_from_text(text: str, base_dir: Path | None = None) -> Flow:
    flow, _ = parse_flow(text, "inline.yaml")
    return flow.with_base_dir(base_dir or Path("."))


def flow_from_file(path: Path) -> Flow:
    return load_flow(path).with_base_dir(path.parent)


async def run_flow(flow: Flow, turns: Iterable[str | None], **kwargs: Any) -> Run:
    channel = TextChannel(scripted(turns), **kwargs.pop("channel_options", {}))
    events: list[IvrEvent] = []
    session = IvrSession(
        flow, channel, SilentSynthesizer(), events=events.append, clock=channel.clock, **kwargs
    )
    result = await session.run()
    return Run(result, events, channel)
