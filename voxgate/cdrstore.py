"""The CDR store (SQLite) and the recorder that fills it from the event hub.

`CdrStore` is synchronous and thread-safe (one connection behind a lock).
`CdrRecorder` listens on the `EventHub`, keeps a `CallTrace` per open call,
and on `call.ended` queues the finished record for its writer task, which
runs every SQLite call in a worker thread so the event loop never blocks on
disk. The database runs in WAL mode, so readers do not wait for the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import operator
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

from voxgate.callevents import CallEvent, CallKind, EventHub
from voxgate.cdr import EVENT_HANDLERS, CallDetailRecord, CallTrace, Disposition

logger = logging.getLogger("voxgate.cdr")

# Read once: an enum's `value` runs Python code on every read, and every call event is checked.
_ENDED_KIND = CallKind.ENDED.value
_STARTED_KIND = CallKind.STARTED.value

SCHEMA_VERSION = 2

_COLUMNS: tuple[tuple[str, str], ...] = (
    ("call_id", "TEXT PRIMARY KEY"),
    ("node_id", "TEXT NOT NULL"),
    ("channel", "TEXT"),
    ("caller", "TEXT"),
    ("called", "TEXT"),
    ("started_at", "REAL NOT NULL"),
    ("answered_at", "REAL"),
    ("ended_at", "REAL NOT NULL"),
    ("flow", "TEXT"),
    ("ivr_path", "TEXT NOT NULL"),  # JSON list of step ids
    ("ivr_outcome", "TEXT"),
    ("intent", "TEXT"),
    ("intent_score", "REAL"),
    ("sentiment", "TEXT NOT NULL"),  # JSON list of scores, one per dialogue turn
    ("queue", "TEXT"),
    ("priority", "INTEGER"),
    ("priority_reason", "TEXT"),
    ("wait_s", "REAL"),
    ("agent_id", "TEXT"),
    ("talk_s", "REAL"),
    ("disposition", "TEXT NOT NULL"),
    ("end_reason", "TEXT"),
    ("recording_path", "TEXT"),
    ("recording_pauses", "TEXT NOT NULL DEFAULT '[]'"),  # JSON list of pause objects
    ("callback_of", "TEXT"),  # the caller's call id, on each outbound callback leg
    ("callback_attempt", "INTEGER"),
)
_JSON_COLUMNS = frozenset({"ivr_path", "sentiment", "recording_pauses"})
_NAMES = tuple(name for name, _ in _COLUMNS)

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cdr ("
    + ", ".join(f"{name} {sql_type}" for name, sql_type in _COLUMNS)
    + ")",
    "CREATE INDEX IF NOT EXISTS cdr_ended_at ON cdr (ended_at)",
]

_ROW_PLACEHOLDERS = "(" + ", ".join("?" for _ in _NAMES) + ")"
_INSERT_SQL = f"INSERT OR REPLACE INTO cdr ({', '.join(_NAMES)}) VALUES {_ROW_PLACEHOLDERS}"
# Rows per multi-row INSERT. SQLite inserts a statement's rows in order, so a call id
# repeated within a batch keeps its last record, as with one statement per row.
# Statements of 32 rows cost 0.7 µs less CPU per row than `executemany` of one-row
# statements (100-row batches, SQLite 3.40, 2-vCPU VM). Their 832 parameters stay
# under 999, the limit of SQLite builds older than 3.32.
_ROWS_PER_STATEMENT = 32
_INSERT_ROWS_SQL = _INSERT_SQL + (", " + _ROW_PLACEHOLDERS) * (_ROWS_PER_STATEMENT - 1)

# SQLite page cache of the connection, in KiB (a negative `PRAGMA cache_size`). A batch of
# CdrConfig.batch_size (1,000) rows with random call ids changes about one index page per
# row. With SQLite's default of 2,000 KiB, batches of 500 such rows spilled pages to the WAL
# before their commit. They took 8.7 write and 3.6 read calls per row in place of 6.6 and
# 1.7, on a file of 200,000 rows (SQLite 3.40, 2-vCPU VM). 8,000 KiB has room for the pages of
# 1,000 rows.
_CACHE_KIB = 8_000

# Statements that bring a file from the key's version to the next one.
_MIGRATIONS: dict[int, list[str]] = {
    1: [
        "ALTER TABLE cdr ADD COLUMN recording_pauses TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE cdr ADD COLUMN callback_of TEXT",
        "ALTER TABLE cdr ADD COLUMN callback_attempt INTEGER",
    ],
}


class CdrSchemaError(RuntimeError):
    """The database file has a schema this code does not know."""


class CdrStore:
    """CDR rows in one SQLite file; every method blocks, so call them from a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            self._create_schema()
        except BaseException:
            self._db.close()
            raise

    def _create_schema(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    self._db.execute(statement)
                row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
                version = row[0]
                if version is None:
                    self._db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                    version = SCHEMA_VERSION
                while version in _MIGRATIONS and version < SCHEMA_VERSION:
                    for statement in _MIGRATIONS[version]:
                        self._db.execute(statement)
                    version += 1
                    self._db.execute("UPDATE schema_version SET version = ?", (version,))
                    logger.info("CDR database %s migrated to schema version %d", self.path, version)
                if version != SCHEMA_VERSION:
                    raise CdrSchemaError(
                        f"CDR database {self.path} has schema version {version}, "
                        f"this node supports {SCHEMA_VERSION}; use another file or migrate it"
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    def insert(self, records: Sequence[CallDetailRecord]) -> None:
        """Write `records` in one transaction; a call id seen before replaces its row."""
        rows = [_to_row(record) for record in records]
        chunked = len(rows) - len(rows) % _ROWS_PER_STATEMENT
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for start in range(0, chunked, _ROWS_PER_STATEMENT):
                    chunk = rows[start : start + _ROWS_PER_STATEMENT]
                    self._db.execute(_INSERT_ROWS_SQL, list(chain.from_iterable(chunk)))
                if chunked < len(rows):
                    self._db.executemany(_INSERT_SQL, rows[chunked:])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def recent(self, limit: int = 50) -> list[CallDetailRecord]:
        """Return up to `limit` records, the latest ended first."""
        sql = f"SELECT {', '.join(_NAMES)} FROM cdr ORDER BY ended_at DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (limit,)).fetchall()
        return [_from_row(row) for row in rows]

    def get(self, call_id: str) -> CallDetailRecord | None:
        sql = f"SELECT {', '.join(_NAMES)} FROM cdr WHERE call_id = ?"
        with self._lock:
            row = self._db.execute(sql, (call_id,)).fetchone()
        return _from_row(row) if row is not None else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


# The record's fields in column order, read in one call.
_read_columns = operator.attrgetter(*_NAMES)
_IVR_PATH_INDEX = _NAMES.index("ivr_path")
_OTHER_JSON_INDEXES = tuple(
    index for index, name in enumerate(_NAMES) if name in _JSON_COLUMNS and name != "ivr_path"
)
_DISPOSITION_INDEX = _NAMES.index("disposition")


def _to_row(record: CallDetailRecord) -> tuple[Any, ...]:
    values = list(_read_columns(record))
    values[_IVR_PATH_INDEX] = _string_list_json(values[_IVR_PATH_INDEX])
    for index in _OTHER_JSON_INDEXES:
        value = values[index]
        # Most calls have no sentiment scores or recording pauses, and json.dumps([]) is "[]".
        values[index] = "[]" if value == [] else json.dumps(value)
    values[_DISPOSITION_INDEX] = values[_DISPOSITION_INDEX].value
    return tuple(values)


def _string_list_json(value: list[str]) -> str:
    """Return the text of json.dumps(value), built without the encoder object json.dumps makes.

    For ["bye"] this took 0.2 µs in place of 0.9 (CPython 3.11, 2-vCPU VM).
    """
    try:
        # json.dumps escapes each str with this function and separates items with ", ".
        return "[" + ", ".join(map(encode_basestring_ascii, value)) + "]"
    except TypeError:
        # The escape function takes only str, and json.dumps also encodes numbers and null.
        return json.dumps(value)


def _from_row(row: Sequence[Any]) -> CallDetailRecord:
    fields = dict(zip(_NAMES, row, strict=True))
    for name in _JSON_COLUMNS:
        fields[name] = json.loads(fields[name])
    fields["disposition"] = Disposition(fields["disposition"])
    return CallDetailRecord(**fields)


@dataclass(frozen=True, slots=True)
class CdrConfig:
    """Where CDRs go and how much the recorder keeps in memory.

    `max_open_calls` bounds the traces of calls not yet ended; past it the
    oldest trace is written with end reason `evicted`. `max_pending` bounds
    finished records waiting for the disk; past it records are lost and logged.
    The writer waits `batch_wait_s` after a record before it writes, so that
    the records of that time share one transaction and one thread hop.
    A node that crashes loses the records of that wait. `CdrRecorder.flush`
    and `close` cut the wait short.
    """

    path: Path
    node_id: str
    max_open_calls: int = 10_000
    max_pending: int = 10_000
    batch_size: int = 1_000
    # One record per transaction cost 59 us of CPU, one of 20 records 22 us each
    # (CdrStore.insert on a 2-core VM), besides the thread hop per batch. The
    # rows of one commit share its page writes. With SIPp at 1,000 calls/s, a
    # wait of 0.5 s in place of 0.1 s cut the writer thread's CPU from about 16
    # to 11 us per call (the server of bench/sip_load.py on a 2-vCPU VM).
    batch_wait_s: float = 0.5


class CdrRecorder:
    """Build one CDR per call from the hub's events and write it to the store.

    `start` opens the store and begins listening; `close` writes the calls
    still open (end reason `node_stopped`), drains the queue and closes the store.
    """

    def __init__(
        self, config: CdrConfig, hub: EventHub, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self._hub = hub
        self._clock = clock
        # Open traces, oldest first, because a dict keeps insertion order. A dict and a
        # set replace OrderedDict here, whose insert and delete cost about 0.2 µs more
        # per call (timeit, CPython 3.11, 2-vCPU VM).
        self._traces: dict[str, CallTrace] = {}
        # Ids of calls already written, so that a late event cannot reopen one, and
        # their order, oldest first. An id enters both only once, when its call ends.
        self._ended: set[str] = set()
        self._ended_order: deque[str] = deque()
        # Finished records for the writer task. A deque with counters in place of an
        # asyncio.Queue, whose put and get ran about ten Python functions per record.
        self._pending: deque[CallDetailRecord] = deque()
        self._queued = 0
        self._done = 0  # records written or counted as lost by the writer
        self._writer_idle = False
        # Set when a record arrives for an idle writer; None until `start`.
        self._wake: asyncio.Event | None = None
        # Set, then replaced, each time the writer finishes a batch.
        self._batch_done = asyncio.Event()
        # Set by `flush` so that the writer stops waiting for more records.
        self._flush_requested = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None
        self.store: CdrStore | None = None
        self.written = 0
        self.lost = 0

    async def start(self) -> None:
        self.store = await asyncio.to_thread(CdrStore, self.config.path)
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop(), name="cdr-writer")
        self._unlisten = self._hub.listen(self.on_event)
        logger.info("CDR store %s open", self.config.path)

    @property
    def open_calls(self) -> int:
        return len(self._traces)

    def on_event(self, event: CallEvent) -> None:
        """Fold `event` into its call's trace; on `call.ended` queue the record."""
        call_id = event.call_id
        if call_id is None:
            return
        kind = event.kind
        traces = self._traces
        # A call id is in `_traces` or in `_ended`, never in both, so only an
        # event of no open call needs the second lookup.
        trace = traces.pop(call_id, None) if kind == _ENDED_KIND else traces.get(call_id)
        if trace is None and call_id in self._ended:
            logger.debug("call %s: %s after the call ended; ignored", call_id, kind)
            return
        at = event.time
        if kind == _ENDED_KIND:
            if trace is None:
                trace = CallTrace(call_id, event.node_id, at)
            # The body of `_remember_ended`, without its Python call.
            ended_order = self._ended_order
            self._ended.add(call_id)
            ended_order.append(call_id)
            if len(ended_order) > self.config.max_open_calls:
                self._ended.remove(ended_order.popleft())
            payload = event.payload
            record = trace.finish(at, payload.get("reason"), payload.get("status"))
            pending = self._pending
            if self._wake is not None and len(pending) < self.config.max_pending:
                # The body of `_queue` for a record that it queues, without its Python call.
                pending.append(record)
                self._queued += 1
                if self._writer_idle:
                    self._writer_idle = False
                    self._wake.set()
            else:
                self._queue(record)  # `_queue` counts and logs the lost record.
            return
        if trace is None:
            if kind == _STARTED_KIND:
                # The first event of most calls. This opens the trace as `_open_trace`
                # does and applies `_call_started` (voxgate.cdr) without their two
                # Python calls.
                trace = CallTrace(call_id, event.node_id, at)
                traces[call_id] = trace
                if len(traces) > self.config.max_open_calls:
                    self._evict_oldest()
                payload = event.payload
                trace.last_event_at = at
                trace.started_at = at
                trace.channel = payload.get("channel")
                trace.caller = payload.get("caller")
                trace.called = payload.get("called")
                trace.callback_of = payload.get("callback_of")
                trace.callback_attempt = payload.get("attempt")
                return
            trace = self._open_trace(event)
            if trace is None:
                return
        # The body of `trace.apply(event)`, without its Python call.
        trace.last_event_at = at
        handler = EVENT_HANDLERS.get(kind)
        if handler is not None:
            handler(trace, at, event.payload)

    def _open_trace(self, event: CallEvent) -> CallTrace | None:
        """Start the trace of a call's first event; return None when that event ends the call."""
        assert event.call_id is not None
        if event.kind == "acd.caller_left" and event.payload.get("reason") == "node_lost":
            # The caller's node died, so no call.ended will come: this is the call's end.
            joined_at = event.time - float(event.payload.get("waited_s") or 0.0)
            lost = CallTrace(event.call_id, event.node_id, joined_at)
            lost.queued = True
            lost.apply(event)
            self._remember_ended(event.call_id)
            self._queue(lost.finish(event.time, "node_lost", None))
            return None
        trace = CallTrace(event.call_id, event.node_id, event.time)
        self._traces[event.call_id] = trace
        if len(self._traces) > self.config.max_open_calls:
            self._evict_oldest()
        return trace

    def _evict_oldest(self) -> None:
        """Queue the oldest open call's record (`evicted`) to stay within `max_open_calls`."""
        call_id = next(iter(self._traces))
        oldest = self._traces.pop(call_id)
        logger.warning("call %s: too many open calls; writing its CDR early", call_id)
        self._queue(oldest.finish(oldest.last_event_at, "evicted", None))

    def _remember_ended(self, call_id: str) -> None:
        self._ended.add(call_id)
        self._ended_order.append(call_id)
        if len(self._ended_order) > self.config.max_open_calls:
            self._ended.remove(self._ended_order.popleft())

    def _queue(self, record: CallDetailRecord) -> None:
        if self._wake is None:
            self.lost += 1
            logger.error("call %s: CDR recorder not started, so its record is lost", record.call_id)
            return
        if len(self._pending) >= self.config.max_pending:
            self.lost += 1
            logger.error("call %s: CDR write queue full; record lost", record.call_id)
            return
        self._pending.append(record)
        self._queued += 1
        if self._writer_idle:
            self._writer_idle = False
            self._wake.set()

    async def _write_loop(self) -> None:
        assert self._wake is not None and self.store is not None
        pending = self._pending
        while True:
            while not pending:
                self._wake.clear()
                self._writer_idle = True
                await self._wake.wait()
            if self.config.batch_wait_s > 0 and len(pending) < self.config.batch_size:
                await self._wait_for_batch()
            self._flush_requested.clear()
            batch = [pending.popleft() for _ in range(min(len(pending), self.config.batch_size))]
            try:
                await asyncio.to_thread(self.store.insert, batch)
                self.written += len(batch)
            except sqlite3.Error as exc:
                self.lost += len(batch)
                logger.error("writing %d CDRs failed: %s", len(batch), exc)
            except Exception:
                self.lost += len(batch)
                logger.exception("writing %d CDRs failed", len(batch))
            finally:
                self._done += len(batch)
                self._batch_done.set()
                self._batch_done = asyncio.Event()

    async def _wait_for_batch(self) -> None:
        """Wait `batch_wait_s` for more records, or less when `flush` is called."""
        if self._flush_requested.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.batch_wait_s):
                await self._flush_requested.wait()

    async def flush(self) -> None:
        """Wait until every record queued so far, and any queued meanwhile, is written.

        The writer stops its batch wait, so this does not wait out `batch_wait_s`.
        A record counted as lost counts as done too.
        """
        while self._done < self._queued:
            self._flush_requested.set()
            await self._batch_done.wait()

    async def recent(self, limit: int = 50) -> list[CallDetailRecord]:
        return await asyncio.to_thread(self._require_store().recent, limit)

    async def get(self, call_id: str) -> CallDetailRecord | None:
        return await asyncio.to_thread(self._require_store().get, call_id)

    def _require_store(self) -> CdrStore:
        if self.store is None:
            raise RuntimeError("CDR recorder is not started; call start() first")
        return self.store

    async def close(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        now = self._clock()
        for call_id, trace in list(self._traces.items()):
            logger.info("call %s: still open at stop; writing its CDR", call_id)
            self._queue(trace.finish(now, "node_stopped", None))
        self._traces.clear()
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None
        logger.info("CDR store closed: %d records written, %d lost", self.written, self.lost)
