"""baresip, a real SIP user agent, registers with digest and calls the endpoint."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from signaling.sip.auth import AuthConfig
from signaling.sip.endpoint import InboundCall, SipConfig, SipEndpoint
from tests.sip.support import ScriptedHandler

BARESIP = shutil.which("baresip")
SOX = shutil.which("sox")

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(BARESIP is None or SOX is None, reason="baresip or sox is not installed"),
]


class RecordingHandler(ScriptedHandler):
    """Answers like ScriptedHandler and records the registrar state at INVITE time."""

    endpoint: SipEndpoint | None = None
    contacts_at_invite: list[str] | None = None

    async def on_invite(self, call: InboundCall) -> None:
        assert self.endpoint is not None
        loop = asyncio.get_running_loop()
        registrar = self.endpoint.core.registrar
        self.contacts_at_invite = registrar.contacts("alice@127.0.0.1", loop.time())
        await super().on_invite(call)


def write_config(directory: Path, port: int) -> None:
    modules = "/usr/lib/baresip/modules"
    (directory / "config").write_text(
        "sip_listen 127.0.0.1:0\n"
        f"audio_player aufile,{directory / 'heard.wav'}\n"
        f"audio_source aufile,{directory / 'tone.wav'}\n"
        f"audio_alert aufile,{directory / 'alert.wav'}\n"
        f"module_path {modules}\nmodule g711.so\nmodule aufile.so\n"
        "module_app account.so\nmodule_app menu.so\n"
    )
    (directory / "accounts").write_text(
        f"<sip:alice@127.0.0.1:{port}>;auth_pass=secret;regint=600\n"
    )


async def test_baresip_registers_and_calls_with_digest(tmp_path: Path) -> None:
    handler = RecordingHandler(mode="answer")
    # baresip 1.0 gives up on a challenge list that does not start with MD5.
    auth = AuthConfig(users={"alice": "secret"}, algorithms=("MD5",))
    endpoint = SipEndpoint(SipConfig(port=0, auth=auth), handler)
    handler.endpoint = endpoint
    await endpoint.start()
    tone = tmp_path / "tone.wav"
    sox = await asyncio.create_subprocess_exec(
        str(SOX), "-n", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
        str(tone), "synth", "1.0", "sine", "440",
    )  # fmt: skip
    assert await sox.wait() == 0
    write_config(tmp_path, endpoint.port)
    assert BARESIP is not None
    process = await asyncio.create_subprocess_exec(
        BARESIP, "-f", str(tmp_path), "-n", "127.0.0.1", "-t", "30",
        "-e", f"/dial sip:100@127.0.0.1:{endpoint.port}",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        call = await asyncio.wait_for(handler.calls.get(), 20.0)
        reason = await asyncio.wait_for(handler.reasons.get(), 20.0)
    finally:
        if process.returncode is None:
            process.terminate()
        output, _ = await asyncio.wait_for(process.communicate(), 20.0)
        await endpoint.stop()

    log = output.decode(errors="replace")
    assert handler.contacts_at_invite is not None, log
    assert len(handler.contacts_at_invite) == 1, log
    assert call.caller == "alice"
    assert call.called == "100"
    assert call.remote_sdp is not None
    assert b"PCMU" in call.remote_sdp
    assert reason == "bye", log
    assert handler.errors == []
