"""Read CDRs over HTTP: `GET /api/cdrs?limit=N` and `GET /api/cdrs/{call_id}`.

CDRs contain caller numbers, so a configured bearer token is required, as
for the event stream; without one only loopback clients are served.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from voxgate.cdr import CallDetailRecord
from voxgate.cdrstore import CdrRecorder
from voxgate.eventstream import MAX_CALL_ID_LENGTH, check_bearer

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclasses.dataclass(frozen=True, slots=True)
class _CdrApi:
    recorder: CdrRecorder
    token: str | None


CDR_API_KEY: web.AppKey[_CdrApi] = web.AppKey("cdr_api", _CdrApi)


def record_to_json(record: CallDetailRecord) -> dict[str, Any]:
    """Return the record as a JSON-ready dict with the column names of the CDR table."""
    fields = dataclasses.asdict(record)
    fields["disposition"] = record.disposition.value
    return fields


async def _recent(request: web.Request) -> web.Response:
    api = request.app[CDR_API_KEY]
    check_bearer(request, api.token)
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise web.HTTPBadRequest(text=f"invalid limit {raw[:20]!r}: expected 1 to {MAX_LIMIT}")
    records = await api.recorder.recent(limit)
    return web.json_response({"cdrs": [record_to_json(record) for record in records]})


async def find_record(
    request: web.Request, recorder: CdrRecorder, token: str | None, *, missing: str
) -> CallDetailRecord:
    """Return the CDR of the route's `{call_id}` after checking the bearer `token`.

    Raise 400 for an overlong call id and 404 with the text `missing` when no CDR exists.
    """
    check_bearer(request, token)
    call_id = request.match_info["call_id"]
    if len(call_id) > MAX_CALL_ID_LENGTH:
        raise web.HTTPBadRequest(text=f"invalid call id: longer than {MAX_CALL_ID_LENGTH}")
    record = await recorder.get(call_id)
    if record is None:
        raise web.HTTPNotFound(text=missing)
    return record


async def _by_call(request: web.Request) -> web.Response:
    api = request.app[CDR_API_KEY]
    record = await find_record(request, api.recorder, api.token, missing="no CDR for this call id")
    return web.json_response(record_to_json(record))


def add_cdr_routes(app: web.Application, recorder: CdrRecorder, *, token: str | None) -> None:
    """Serve the recorder's CDRs behind the bearer `token` (None: loopback clients only)."""
    app[CDR_API_KEY] = _CdrApi(recorder, token)
    app.router.add_get("/api/cdrs", _recent)
    app.router.add_get("/api/cdrs/{call_id}", _by_call)
