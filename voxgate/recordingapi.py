"""Fetch a call's recording over HTTP: `GET /api/cdrs/{call_id}/recording`.

The file is found through the call's CDR (`recording_path`), so a
recording can be fetched once its call has ended. Only files inside the
node's recordings directory are served: a CDR whose path points elsewhere
(a voicemail reference of a record step) gets 404, as does a file deleted
since. Recordings are caller data, so the route takes the same bearer
token as the CDR routes, and without one only loopback clients.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

from aiohttp import web

from voxgate.cdrapi import find_record
from voxgate.cdrstore import CdrRecorder

logger = logging.getLogger("api")


@dataclasses.dataclass(frozen=True, slots=True)
class _RecordingApi:
    recorder: CdrRecorder
    directory: Path
    token: str | None


RECORDING_API_KEY: web.AppKey[_RecordingApi] = web.AppKey("recording_api", _RecordingApi)


async def _recording(request: web.Request) -> web.StreamResponse:
    api = request.app[RECORDING_API_KEY]
    record = await find_record(
        request,
        api.recorder,
        api.token,
        missing="no CDR for this call id; a call's CDR and recording appear when the call ends",
    )
    call_id = record.call_id
    if record.recording_path is None:
        raise web.HTTPNotFound(text="this call has no recording")
    path, problem = await asyncio.to_thread(_locate, api.directory, record.recording_path)
    if problem is not None:
        logger.info("call %s: recording not served: %s", call_id, problem)
        raise web.HTTPNotFound(text=problem)
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "audio/wav",
            "Content-Disposition": f'attachment; filename="{path.name}"',
            "Cache-Control": "no-store",
        },
    )


def _locate(directory: Path, recording_path: str) -> tuple[Path, str | None]:
    """Resolve a CDR's recording path; return it and why it cannot be served, or None."""
    path = Path(recording_path).resolve()
    if not path.is_relative_to(directory.resolve()):
        return path, "this call's recording is not in the recordings directory"
    if not path.is_file():
        return path, "the recording file of this call no longer exists"
    return path, None


def add_recording_route(
    app: web.Application, recorder: CdrRecorder, directory: Path, *, token: str | None
) -> None:
    """Serve the recordings under `directory` that the CDRs name, behind the bearer `token`."""
    app[RECORDING_API_KEY] = _RecordingApi(recorder, directory, token)
    app.router.add_get("/api/cdrs/{call_id}/recording", _recording)
