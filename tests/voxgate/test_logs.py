"""The log set-up of `voxgate serve`: one line per record with the call id."""

from __future__ import annotations

import asyncio
import copy
import io
import logging
import os
import re
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from voxgate.logs import (
    LOG_FORMAT,
    BatchingStreamHandler,
    LineFormatter,
    call_id_var,
    configure_logging,
)

REPOSITORY = Path(__file__).resolve().parents[2]

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


def make_record(
    level: int = logging.INFO,
    message: str = "call %s: ended (%s)",
    args: tuple[object, ...] = ("c0ffee12", "bye"),
    **attributes: object,
) -> logging.LogRecord:
    record = logging.LogRecord("sip.core", level, "core.py", 1, message, args, None)
    record.call_id = "c0ffee12"
    for name, value in attributes.items():
        setattr(record, name, value)
    return record


def exception_info() -> tuple[type[BaseException], BaseException, TracebackType | None]:
    try:
        raise ValueError("broken on purpose")
    except ValueError:
        info = sys.exc_info()
    assert info[0] is not None and info[1] is not None
    return info[0], info[1], info[2]


FORMATTER_CASES = {
    "info": make_record(),
    "critical pads no level": make_record(logging.CRITICAL),
    "debug without args": make_record(logging.DEBUG, "plain text", ()),
    "mapping args": make_record(message="%(a)s-%(b)d", args=({"a": "x", "b": 2},)),
    "last millisecond": make_record(created=1_700_000_000.9996, msecs=999.0),
    "next second": make_record(created=1_700_000_001.0, msecs=0.0),
    "milliseconds set past 999": make_record(msecs=1234.5),
    "before 1970": make_record(created=-1.5, msecs=-500.0),
    "exception": make_record(exc_info=exception_info()),
    "exception text only": make_record(exc_text="Traceback (most recent call last):\nX"),
    "stack": make_record(stack_info="Stack (most recent call last):\n  here"),
    "message ending in newline": make_record(
        message="two\n", args=(), exc_text="Traceback (most recent call last):\nX"
    ),
}


@pytest.mark.parametrize("case", FORMATTER_CASES)
def test_line_formatter_matches_stdlib(case: str) -> None:
    record = FORMATTER_CASES[case]
    expected = logging.Formatter(LOG_FORMAT).format(copy.copy(record))

    fast = LineFormatter()
    # Twice, so that the second line takes the cached date and time text.
    assert fast.format(copy.copy(record)) == expected
    assert fast.format(copy.copy(record)) == expected


def test_line_formatter_changes_second() -> None:
    formatter = LineFormatter()
    stdlib = logging.Formatter(LOG_FORMAT)
    for created in (1_700_000_000.25, 1_700_000_000.75, 1_700_000_001.5, 1_700_000_000.5):
        record = make_record(created=created, msecs=float(int((created % 1) * 1000)))
        assert formatter.format(copy.copy(record)) == stdlib.format(copy.copy(record))


def test_line_formatter_missing_call_id_raises() -> None:
    record = make_record()
    del record.call_id  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="call_id"):
        logging.Formatter(LOG_FORMAT).format(copy.copy(record))
    with pytest.raises(ValueError, match="call_id"):
        LineFormatter().format(copy.copy(record))


def batching_logger(
    stream: io.StringIO, **options: Any
) -> tuple[logging.Logger, BatchingStreamHandler]:
    """Return a logger of its own that writes through a new batching handler to `stream`."""
    handler = BatchingStreamHandler(stream, **options)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test.batching.{id(handler)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, handler


async def wait_for_text(stream: io.StringIO, expected: str) -> None:
    """Wait until `stream` contains `expected`, polling the loop for up to 5 s."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while expected not in stream.getvalue():
        assert asyncio.get_running_loop().time() < deadline, stream.getvalue()
        await asyncio.sleep(0.005)


class CountingStream(io.StringIO):
    """A text stream that counts its write calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_batching_writes_once_per_iteration() -> None:
    stream = CountingStream()
    logger, handler = batching_logger(stream)

    logger.info("one")
    logger.debug("two")
    assert stream.getvalue() == ""

    # The write was scheduled with call_soon before this task yielded, so it runs first.
    await asyncio.sleep(0)
    assert stream.getvalue() == "INFO one\nDEBUG two\n"
    assert stream.writes == 1

    logger.info("three")
    await asyncio.sleep(0)
    assert stream.getvalue() == "INFO one\nDEBUG two\nINFO three\n"
    assert stream.writes == 2
    handler.close()


async def test_batching_holds_info_until_warning() -> None:
    stream = io.StringIO()
    logger, handler = batching_logger(stream, delay_s=3600.0)

    logger.info("one")
    logger.debug("two")
    assert stream.getvalue() == ""

    logger.warning("three")
    assert stream.getvalue() == "INFO one\nDEBUG two\nWARNING three\n"
    handler.close()


async def test_batching_delay_writes_lines_in_order() -> None:
    stream = io.StringIO()
    logger, handler = batching_logger(stream, delay_s=0.01)

    for number in range(5):
        logger.info("line %d", number)
    await wait_for_text(stream, "line 4\n")

    assert stream.getvalue() == "".join(f"INFO line {number}\n" for number in range(5))
    logger.info("after the timer")
    await wait_for_text(stream, "after the timer\n")
    handler.close()


async def test_batching_writes_at_max_chars() -> None:
    stream = io.StringIO()
    logger, handler = batching_logger(stream, delay_s=3600.0, max_chars=20)

    logger.info("short")
    assert stream.getvalue() == ""
    logger.info("long enough to pass")
    assert stream.getvalue() == "INFO short\nINFO long enough to pass\n"
    handler.close()


async def test_batching_worker_thread_writes_at_once() -> None:
    stream = io.StringIO()
    logger, handler = batching_logger(stream, delay_s=3600.0)

    logger.info("from the loop")
    await asyncio.to_thread(logger.info, "from a worker")

    assert stream.getvalue() == "INFO from the loop\nINFO from a worker\n"
    handler.close()


async def test_batching_flush_and_close_write_buffer() -> None:
    stream = io.StringIO()
    logger, handler = batching_logger(stream, delay_s=3600.0)

    logger.info("before flush")
    handler.flush()
    assert stream.getvalue() == "INFO before flush\n"

    logger.info("before close")
    handler.close()
    assert stream.getvalue() == "INFO before flush\nINFO before close\n"


async def test_batching_shutdown_writes_buffer() -> None:
    stream = io.StringIO()
    logger, handler = batching_logger(stream, delay_s=3600.0)

    logger.info("pending at exit")
    # The function that the logging module registers with atexit.
    logging.shutdown([weakref.ref(handler)])

    assert stream.getvalue() == "INFO pending at exit\n"


def test_batching_without_loop_writes_at_once() -> None:
    stream = io.StringIO()
    logger, handler = batching_logger(stream, delay_s=3600.0)

    logger.info("no loop")

    assert stream.getvalue() == "INFO no loop\n"
    handler.close()


def test_batching_reschedules_after_loop_stops() -> None:
    stream = io.StringIO()
    logger, handler = batching_logger(stream, delay_s=3600.0)

    async def log(message: str) -> None:
        logger.info(message)

    # The first loop ends with its scheduled write still pending, so that write never runs.
    asyncio.run(log("first loop"))
    assert stream.getvalue() == ""

    handler.delay_s = 0.01

    async def log_and_wait() -> None:
        logger.info("second loop")
        await wait_for_text(stream, "second loop\n")

    asyncio.run(log_and_wait())
    assert stream.getvalue() == "INFO first loop\nINFO second loop\n"
    handler.close()


def test_batching_broken_stream_reports_error(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    logger, handler = batching_logger(stream, delay_s=3600.0)
    stream.close()

    logger.warning("lost")

    assert "--- Logging error ---" in capsys.readouterr().err
    assert handler._lines == []
    handler.close()


SERVE_LIKE = """
import asyncio, logging, sys
import uvloop
from voxgate.logs import configure_logging

configure_logging("INFO")
log = logging.getLogger("voxgate.test")

async def main() -> None:
    for number in range(3):
        log.info("line %d", number)
    if sys.argv[1] == "crash":
        raise RuntimeError("crash on purpose")
    if sys.argv[1] == "exit":
        sys.exit(3)

if sys.argv[2] == "uvloop.run":
    uvloop.run(main())
else:
    asyncio.new_event_loop().run_until_complete(main())
"""
EXIT_STATUS = {"return": 0, "crash": 1, "exit": 3}


# `voxgate serve` runs the node with uvloop.run, which runs the loop again to clean up
# after an exception. SystemExit leaves asyncio's run_until_complete at once, before the
# iteration that would write the lines, so they wait for logging.shutdown at exit.
@pytest.mark.parametrize("runner", ["uvloop.run", "run_until_complete"])
@pytest.mark.parametrize("ending", ["return", "crash", "exit"])
def test_serve_logging_keeps_lines_at_exit(ending: str, runner: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", SERVE_LIKE, ending, runner],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPOSITORY,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )

    lines = [LINE.fullmatch(line) for line in completed.stderr.splitlines()]
    messages = [match["message"] for match in lines if match]
    assert messages == ["line 0", "line 1", "line 2"], completed.stderr
    assert completed.returncode == EXIT_STATUS[ending], completed.stderr
    if ending == "crash":
        assert "RuntimeError: crash on purpose" in completed.stderr
