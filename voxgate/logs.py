"""Logging set-up: stdlib logging, one named logger per subsystem, call id on each line.

The call id travels in a context variable. Every task created while handling
a call copies the context, so each log line of that call carries the id
without passing it around. Caller data never goes into message text.
"""

from __future__ import annotations

import contextvars
import logging
import sys

call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("call_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(call_id)s] %(message)s"


class CallIdFilter(logging.Filter):
    """Adds the current call id (or "-") to each record as `call_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = call_id_var.get()
        return True


def configure_logging(level: str) -> None:
    """Send all loggers to stderr at `level` with the call id on every line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(CallIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
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
