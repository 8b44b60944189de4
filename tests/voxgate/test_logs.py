"""The log set-up of `voxgate serve`: one line per record with the call id."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from voxgate.logs import call_id_var, configure_logging

LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>\S+) +(?P<name>\S+) "
    r"\[(?P<call_id>[^\]]+)\] (?P<message>.*)"
)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Restore the root logger and the module switches that configure_logging sets."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    switches = (
        logging.logThreads, logging.logProcesses, logging.logMultiprocessing, logging._srcfile
    )  # fmt: skip
    noisy = {name: logging.getLogger(name).level for name in ("aioice", "aiortc", "asyncio")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    (
        logging.logThreads, logging.logProcesses, logging.logMultiprocessing, logging._srcfile
    ) = switches  # fmt: skip
    for name, noisy_level in noisy.items():
        logging.getLogger(name).setLevel(noisy_level)


def test_lines_carry_level_name_call_id(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO")
    logger = logging.getLogger("sip.core")
    token = call_id_var.set("c0ffee12")
    try:
        logger.info("call %s: ended (%s)", "c0ffee12", "bye")
        logger.debug("not shown at INFO")
    finally:
        call_id_var.reset(token)
    logger.warning("outside a call", extra={"call_id": "given"})
    logger.info("no call")

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    fields = [LINE.fullmatch(line) for line in lines]
    assert all(fields), lines
    first, second, third = (match.groupdict() for match in fields if match)
    assert first == {
        "level": "INFO", "name": "sip.core", "call_id": "c0ffee12",
        "message": "call c0ffee12: ended (bye)",
    }  # fmt: skip
    assert second["level"] == "WARNING"
    assert second["call_id"] == "given"
    assert third["call_id"] == "-"
    assert lines[0].split(" INFO    sip.core ")[1] == "[c0ffee12] call c0ffee12: ended (bye)"


def test_exception_lines_keep_traceback(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO")
    try:
        raise ValueError("broken on purpose")
    except ValueError:
        logging.getLogger("voxgate.test").exception("handler failed")
    output = capsys.readouterr().err
    assert "ERROR   voxgate.test [-] handler failed" in output
    assert "Traceback (most recent call last):" in output
    assert "ValueError: broken on purpose" in output
