"""Logging set-up: stdlib logging, one named logger per subsystem, call id on each line.

The call id travels in a context variable. Every task created while handling
a call copies the context, so each log line of that call carries the id
without passing it around. Caller data never goes into message text.

Lines below WARNING reach the stream in batches (`BatchingStreamHandler`):
the lines that the event loop's thread logs in one iteration of the loop go
out in one write, early in the next iteration, before the loop waits for I/O
again. A busy node handles several calls' messages per iteration, so it makes
fewer writes than lines. The handler's docstring lists when lines are
written at once and what an abrupt exit loses.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import time
from typing import TextIO

call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("call_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(call_id)s] %(message)s"

# A batch is written once its text reaches this many characters (an estimated 400 lines).
FLUSH_CHARS = 64 * 1024


class CallIdFilter(logging.Filter):
    """Adds the current call id (or "-") to each record as `call_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = call_id_var.get()
        return True


# The milliseconds part of the time text, as `logging.Formatter.default_msec_format` writes it.
_MILLISECONDS = tuple(",%03d" % milliseconds for milliseconds in range(1000))  # noqa: UP031


class LineFormatter(logging.Formatter):
    """Formats records as `logging.Formatter(LOG_FORMAT)` does, in fewer steps.

    The date and time text up to the second is computed once per second, and a
    record without exception or stack text is formatted by one `%` operation.
    Every other record takes the base class's path, so the text is the same.
    """

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)
        self._second: int | None = None
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        return self._format_time(record)

    def _format_time(self, record: logging.LogRecord) -> str:
        # Local time changes only at whole seconds (a zone's offsets are whole seconds
        # too), so the text up to the second is the same for one value of int(created).
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime(
                self.default_time_format, self.converter(record.created)
            )
            self._second = second
        milliseconds = int(record.msecs)
        if 0 <= milliseconds < 1000:
            return self._second_text + _MILLISECONDS[milliseconds]
        return "%s,%03d" % (self._second_text, record.msecs)  # noqa: UP031

    def format(self, record: logging.LogRecord) -> str:
        call_id = record.__dict__.get("call_id")
        if record.exc_info or record.exc_text or record.stack_info or call_id is None:
            return super().format(record)
        record.message = record.getMessage()
        record.asctime = self._format_time(record)
        # `%` took 190 ns here and an f-string with the `:<7` spec 290 ns (timeit, CPython 3.11).
        return "%s %-7s %s [%s] %s" % (  # noqa: UP031
            record.asctime,
            record.levelname,
            record.name,
            call_id,
            record.message,
        )


class BatchingStreamHandler(logging.StreamHandler[TextIO]):
    """Writes formatted lines to a stream in batches, with one write and flush per batch.

    A line goes into a buffer. The buffer, with the new line last, is written at once in
    three cases:

    - the record's level is `flush_level` (WARNING) or higher,
    - no event loop runs in the emitting thread (start-up, shutdown, worker threads),
    - the buffer reaches `max_chars`.

    Otherwise the first buffered line schedules the write on the running loop: with
    `delay_s` 0 in its next iteration (`call_soon`), else `delay_s` later. Lines keep
    the order of their records.

    The default 0 keeps the file current for anyone who reads it while the node runs.
    A line logged before a reply is sent is written before the loop next waits for
    I/O, and a test that checks the log once its SIP peer got the reply relies on it.
    For 2,300 calls of `bench/sip_path.py` (counted with strace), a write per line made
    2,364 writes and the default 919. A `delay_s` of 0.05 s made 145, but it saved no
    CPU measurable beside the noise of several per cent per call of that benchmark.

    `flush()` and `close()` write the buffer, and so does `logging.shutdown`, which
    runs at interpreter exit (atexit): a normal return, `sys.exit`, SIGINT and SIGTERM
    (the node stops on both) and an uncaught exception lose nothing.
    NOTE: a process killed by SIGKILL, or ended by `os._exit` or a fatal signal, loses
    the buffered lines below `flush_level`, which are those of its last loop iteration
    (or last `delay_s`). A callback that blocks the loop holds back the lines buffered
    before it. Python prints the traceback of an uncaught exception before atexit
    runs, so on stderr that traceback comes before the last buffered lines.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        delay_s: float = 0.0,
        max_chars: int = FLUSH_CHARS,
        flush_level: int = logging.WARNING,
    ) -> None:
        super().__init__(stream)
        self.delay_s = delay_s
        self.max_chars = max_chars
        self.flush_level = flush_level
        self._lines: list[str] = []
        self._chars = 0
        # The loop on which a write is scheduled; None when none is pending.
        self._scheduled_on: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # `Handler.format` only picks the formatter, at the cost of a Python call per line.
            formatter = self.formatter
            text = formatter.format(record) if formatter is not None else self.format(record)
            line = text + self.terminator
            self._lines.append(line)
            self._chars += len(line)
            loop = asyncio._get_running_loop()
            if record.levelno >= self.flush_level or loop is None or self._chars >= self.max_chars:
                self._write_buffer()
            elif self._scheduled_on is not loop:
                # A write scheduled on a loop that has stopped since never runs, so a
                # record on another loop schedules a new one.
                self._scheduled_on = loop
                if self.delay_s > 0:
                    loop.call_later(self.delay_s, self._write_scheduled)
                else:
                    loop.call_soon(self._write_scheduled)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _write_scheduled(self) -> None:
        self.acquire()
        try:
            self._scheduled_on = None
            self._write_buffer()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "writing buffered log lines failed"}))
        finally:
            self.release()

    def _write_buffer(self) -> None:
        """Write and flush the buffered lines; the caller holds the handler's lock.

        The buffer is empty afterwards even when the write raises, so a broken
        stream does not make the buffer grow.
        """
        if not self._lines:
            return
        text = "".join(self._lines)
        self._lines.clear()
        self._chars = 0
        self.stream.write(text)
        self.stream.flush()

    def flush(self) -> None:
        """Write the buffered lines and flush the stream; errors of the stream propagate."""
        self.acquire()
        try:
            self._write_buffer()
            super().flush()
        finally:
            self.release()

    def close(self) -> None:
        """Write the buffered lines, then close the handler (not the stream)."""
        self.acquire()
        try:
            self._write_buffer()
        except (OSError, ValueError):
            # A stream closed before its handler: the same errors that
            # logging.shutdown ignores at exit.
            pass
        finally:
            self.release()
            super().close()


def configure_logging(level: str) -> None:
    """Send all loggers to stderr at `level` with the call id on every line."""
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    handler.addFilter(CallIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, BatchingStreamHandler):
            old.close()
    root.addHandler(handler)
    root.setLevel(level)
    # LOG_FORMAT shows no thread, process, source file or line, so records skip
    # collecting them. That saves 12 of the 41 Python calls of one INFO line
    # (CPython 3.11, counted by bench/sip_path.py). The stdlib's logging module
    # documents these switches where it defines them.
    # NOTE: with `_srcfile` None, `stack_info=True` adds no stack to a record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    # aiortc and aioice log every packet at debug level.
    for noisy in ("aioice", "aiortc", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
