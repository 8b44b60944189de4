"""FlowRegistry: routing by called number and hot reload."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

import pytest

from ivr.engine import IvrSession
from ivr.prompts import SilentSynthesizer
from ivr.registry import FlowRegistry
from ivr.textchannel import TextChannel, scripted

FLOW = """flow: hot
numbers: ["3000"]
steps:
  hello: {{type: say, text: "{text}"}}
  bye: {{type: hangup}}
"""


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    # Make each write visible to the mtime check even on coarse file systems.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_routes_numbers_and_default(flows_dir: Path, tmp_path: Path) -> None:
    for name in ("demo.yaml", "contact_center.yaml", "order_status.yaml"):
        shutil.copy(flows_dir / name, tmp_path / name)
    registry = FlowRegistry(tmp_path)
    assert registry.names == ["contact_center", "demo", "order_status"]
    by_number = registry.for_number("2000")
    assert by_number is not None and by_number.flow == "contact_center"
    fallback = registry.for_number("9999")
    assert fallback is not None and fallback.flow == "demo"
    subflow = registry.get("order_status")
    assert subflow is not None and subflow.base_dir == tmp_path


def test_changed_file_used_by_new_calls(tmp_path: Path) -> None:
    path = tmp_path / "hot.yaml"
    _write(path, FLOW.format(text="version one"))
    registry = FlowRegistry(tmp_path)
    first = registry.for_number("3000")
    _write(path, FLOW.format(text="version two"))
    assert registry.reload() == [path]
    second = registry.for_number("3000")
    assert first is not None and second is not None
    assert first.steps["hello"].text == "version one"  # type: ignore[union-attr]
    assert second.steps["hello"].text == "version two"  # type: ignore[union-attr]


async def test_call_in_progress_keeps_its_version(tmp_path: Path) -> None:
    path = tmp_path / "hot.yaml"
    _write(
        path,
        FLOW.format(text="old").replace(
            "  bye:",
            "  ask:\n    type: gather\n"
            "    dtmf: {max_digits: 1}\n"
            "    on: {no_input: bye, no_match: bye, default: bye}\n  bye:",
        ),
    )
    registry = FlowRegistry(tmp_path)
    flow = registry.for_number("3000")
    assert flow is not None
    entered = asyncio.Event()
    proceed = asyncio.Event()

    async def source() -> str | None:
        entered.set()
        await proceed.wait()
        return "#1"

    channel = TextChannel(source)
    session = IvrSession(flow, channel, SilentSynthesizer(), clock=channel.clock)
    task = asyncio.create_task(session.run())
    await asyncio.wait_for(entered.wait(), 10)
    _write(path, FLOW.format(text="new"))
    registry.reload()
    proceed.set()
    result = await asyncio.wait_for(task, 10)
    assert result.prompts == ["old"]
    assert result.path == ["hello", "ask", "bye"]
    new_flow = registry.for_number("3000")
    assert new_flow is not None
    new_channel = TextChannel(scripted([]))
    new_result = await IvrSession(
        new_flow, new_channel, SilentSynthesizer(), clock=new_channel.clock
    ).run()
    assert new_result.prompts == ["new"]


def test_invalid_edit_logged_and_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "hot.yaml"
    _write(path, FLOW.format(text="good"))
    registry = FlowRegistry(tmp_path)
    caplog.set_level(logging.WARNING, logger="ivr.registry")
    _write(path, FLOW.format(text="bad").replace("next", "x") + "  broken: {type: say}\n")
    assert registry.reload() == []
    flow = registry.for_number("3000")
    assert flow is not None
    assert flow.steps["hello"].text == "good"  # type: ignore[union-attr]
    assert path in registry.errors
    assert "is invalid" in caplog.text
    caplog.clear()
    assert registry.reload() == []
    assert "is invalid" not in caplog.text


def test_removed_file_unregisters(tmp_path: Path) -> None:
    path = tmp_path / "hot.yaml"
    _write(path, FLOW.format(text="x"))
    registry = FlowRegistry(tmp_path)
    path.unlink()
    assert registry.reload() == [path]
    assert registry.for_number("3000") is None


async def test_watch_picks_up_changes(tmp_path: Path) -> None:
    path = tmp_path / "hot.yaml"
    _write(path, FLOW.format(text="before"))
    registry = FlowRegistry(tmp_path)
    task = asyncio.create_task(registry.watch(interval_s=0.05))
    try:
        _write(path, FLOW.format(text="after"))
        for _ in range(200):
            flow = registry.for_number("3000")
            if flow is not None and flow.steps["hello"].text == "after":  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.05)
        flow = registry.for_number("3000")
        assert flow is not None
        assert flow.steps["hello"].text == "after"  # type: ignore[union-attr]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_prewarm_builds_intent_classifier(flows_dir: Path, tmp_path: Path) -> None:
    from ivr.intents import _CACHE

    shutil.copy(flows_dir / "contact_center_zh.yaml", tmp_path / "zh.yaml")
    registry = FlowRegistry(tmp_path, prewarm_intents=True)
    flow = registry.get("contact_center_zh")
    assert flow is not None
    cached = _CACHE.get(id(flow))
    assert cached is not None
    assert cached[0] is flow


def test_number_claimed_twice_keeps_first(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write(tmp_path / "a.yaml", FLOW.format(text="a").replace("flow: hot", "flow: first"))
    _write(tmp_path / "b.yaml", FLOW.format(text="b").replace("flow: hot", "flow: second"))
    caplog.set_level(logging.WARNING, logger="ivr.registry")
    registry = FlowRegistry(tmp_path)
    flow = registry.for_number("3000")
    assert flow is not None
    assert flow.flow == "first"
    assert "listed by flows first and second" in caplog.text


def test_for_call_prefers_number_then_setting(flows_dir: Path, tmp_path: Path) -> None:
    for name in ("demo.yaml", "contact_center.yaml", "order_status.yaml"):
        shutil.copy(flows_dir / name, tmp_path / name)
    registry = FlowRegistry(tmp_path)

    by_number = registry.for_call("2000", "demo")
    by_setting = registry.for_call("9999", "contact_center")
    marked_default = registry.for_call("9999", "absent")

    assert by_number is not None
    assert by_number.flow == "contact_center"
    assert by_setting is not None
    assert by_setting.flow == "contact_center"
    assert marked_default is not None
    assert marked_default.flow == "demo"


SCRIPT = """cases:
  - name: greets
    turns: []
    expect: {prompts: ["good"]}
"""


def test_script_files_are_not_flows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write(tmp_path / "hot.yaml", FLOW.format(text="good"))
    _write(tmp_path / "hot.script.yaml", SCRIPT)
    _write(tmp_path / "hot.script.yml", SCRIPT)
    caplog.set_level(logging.WARNING, logger="ivr.registry")
    registry = FlowRegistry(tmp_path)
    assert registry.names == ["hot"]
    assert registry.errors == {}
    assert "is invalid" not in caplog.text


def test_invalid_first_load_says_not_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path / "hot.yaml", "flow: hot\nsteps: {}\n")
    caplog.set_level(logging.WARNING, logger="ivr.registry")
    registry = FlowRegistry(tmp_path)
    assert registry.names == []
    assert "is invalid (1 problems); flow not loaded" in caplog.text
    assert "keeping the previous version" not in caplog.text
    caplog.clear()
    _write(tmp_path / "hot.yaml", FLOW.format(text="good"))
    registry.reload()
    _write(tmp_path / "hot.yaml", "flow: hot\nsteps: {}\n")
    registry.reload()
    assert "keeping the previous version" in caplog.text
