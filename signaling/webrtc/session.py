"""One signaling WebSocket: login, rate limit, parse, dispatch and send.

A session lives as long as its socket. Calls and agent records belong to
the `WebRtcServer`, which routes messages for a user to that user's newest
session, so a session can end without ending anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from ivr.channel import DtmfInput
from signaling.webrtc.auth import AuthError, Claims
from signaling.webrtc.peer import add_remote_candidate
from signaling.webrtc.protocol import (
    CLIENT_TYPES,
    AgentStateMessage,
    Call,
    Candidate,
    Dtmf,
    ErrorCode,
    Hangup,
    Hold,
    Login,
    Message,
    Mute,
    Offer,
    ProtocolError,
    Role,
    Session,
    Transfer,
    Unhold,
    encode_message,
    error_message,
    parse_message,
)
from signaling.webrtc.ratelimit import TokenBucket

if TYPE_CHECKING:
    from signaling.webrtc.server import WebRtcServer

logger = logging.getLogger("webrtc")


class SignalingSession:
    """One signaling WebSocket: login, rate limit, parse and dispatch."""

    def __init__(self, server: WebRtcServer, ws: web.WebSocketResponse) -> None:
        self.server = server
        self.ws = ws
        self.config = server.config
        self.claims: Claims | None = None
        self.session_id = secrets.token_hex(8)
        self._bucket = TokenBucket(self.config.rate_per_s, self.config.rate_burst, time.monotonic())
        self._violations = 0
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(maxsize=256)
        self._writer: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    def send(self, message: Message) -> None:
        """Queue a message for this socket; a full queue means a stalled client, which is closed."""
        try:
            self._outbox.put_nowait(encode_message(message))
        except asyncio.QueueFull:
            logger.warning("signaling client is not reading, closing its session")
            self.server.spawn(self.close(1008, "not reading"), "webrtc-close-stalled")

    async def _write(self) -> None:
        while True:
            text = await self._outbox.get()
            if text is None or self.ws.closed:
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                logger.debug("signaling send failed, peer gone")
                return

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode())

    async def run(self) -> None:
        self._writer = asyncio.create_task(self._write(), name=f"webrtc-ws-{self.session_id}")
        try:
            await self._loop()
        finally:
            if self._refresher is not None:
                self._refresher.cancel()
            with contextlib.suppress(asyncio.QueueFull):
                self._outbox.put_nowait(None)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._writer, timeout=2.0)
            self._writer.cancel()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        login_deadline = loop.time() + self.config.login_timeout_s
        while not self.ws.closed:
            timeout = None if self.claims else max(0.0, login_deadline - loop.time())
            try:
                msg = await self.ws.receive(timeout=timeout)
            except TimeoutError:
                self.send(self._error(ErrorCode.UNAUTHORIZED, "login timed out"))
                await self._drain_and_close(4001, "login timed out")
                return
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if msg.type is WSMsgType.ERROR:
                logger.debug("signaling socket error: %s", self.ws.exception())
                return
            if not self._bucket.allow(time.monotonic()):
                self._violations += 1
                self.send(self._error(ErrorCode.RATE_LIMITED, "too many messages, slow down"))
                if self._violations >= self.config.max_rate_violations:
                    await self._drain_and_close(1008, "rate limit exceeded")
                    return
                continue
            try:
                if msg.type is not WSMsgType.TEXT:
                    raise ProtocolError(ErrorCode.BAD_MESSAGE, "only text frames are accepted")
                message = parse_message(
                    msg.data, max_bytes=self.config.max_message_bytes, accept=CLIENT_TYPES
                )
                await self._dispatch(message)
            except ProtocolError as exc:
                logger.debug("signaling error sent: %s", exc.code.value)
                self.send(error_message(exc))
                if exc.code is ErrorCode.UNAUTHORIZED and self.claims is None:
                    await self._drain_and_close(4001, "unauthorized")
                    return
            except Exception:
                logger.exception("signaling message handling failed")
                self.send(self._error(ErrorCode.INTERNAL, "internal error, message not processed"))

    async def _drain_and_close(self, code: int, reason: str) -> None:
        await asyncio.sleep(0)
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        if self._writer is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._writer), timeout=2.0)
        await self.close(code, reason)

    @staticmethod
    def _error(code: ErrorCode, text: str) -> Message:
        return error_message(ProtocolError(code, text))

    async def _dispatch(self, message: Message) -> None:
        if isinstance(message, Login):
            self._login(message)
            return
        if self.claims is None:
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "login required first", field="type")
        user = self.claims.user
        server = self.server
        match message:
            case Call():
                call = await server.open_call(
                    user, self.claims.role, message.call_id, message.to, message.sdp
                )
                server.spawn(server.run_caller_call(call), f"webrtc-call-{call.call_id}")
            case Offer():
                self._require_agent()
                if not server.resolve_pending(user, message.call_id, message):
                    raise ProtocolError(
                        ErrorCode.NOT_FOUND,
                        "no incoming call with this call_id is ringing",
                        field="call_id",
                        call_id=message.call_id,
                    )
            case Candidate():
                if message.call_id not in server.calls and server.keep_early_candidate(
                    user, message
                ):
                    return
                call = server.find_call(user, message.call_id)
                await add_remote_candidate(
                    call.transport.pc, message, allow_mdns=self.config.allow_mdns
                )
            case Hangup():
                if not server.resolve_pending(user, message.call_id, None):
                    await server.find_call(user, message.call_id).hangup(message.reason or "hangup")
            case Dtmf():
                call = server.find_call(user, message.call_id)
                for digit in message.digits:
                    call.transport.deliver_dtmf(DtmfInput(digit, message.duration_ms))
            case Hold():
                server.find_call(user, message.call_id).hold()
            case Unhold():
                server.find_call(user, message.call_id).unhold()
            case Mute():
                server.find_call(user, message.call_id).set_muted(message.muted)
            case Transfer():
                self._require_agent()
                call = server.find_call(user, message.call_id)
                # A transfer to a number waits for the far end's answer, so it
                # runs beside this loop, which keeps taking the agent's messages.
                server.spawn(
                    server.transfer_call(call, message.target_kind, message.target),
                    f"webrtc-transfer-{call.call_id}",
                )
            case AgentStateMessage():
                self._require_agent()
                agent = server.agents[user]
                server.set_agent_state(agent, message.state, message.reason)
            case _:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_TYPE, f"unexpected message type '{message.type}'"
                )

    def _login(self, message: Login) -> None:
        if self.claims is not None:
            raise ProtocolError(ErrorCode.BAD_STATE, "already logged in", field="type")
        try:
            self.claims = self.server.signer.verify(message.token)
        except AuthError as exc:
            logger.info("signaling login rejected: %s", exc)
            raise ProtocolError(ErrorCode.UNAUTHORIZED, str(exc), field="token") from None
        self._send_session()
        self.server.session_started(self, self.claims)
        self._refresher = asyncio.create_task(
            self._refresh_token(), name=f"webrtc-token-{self.session_id}"
        )

    def _send_session(self) -> None:
        """Send `session` with a fresh token, so a reconnect works after the old one expires."""
        assert self.claims is not None
        token, expires_at = self.server.signer.issue(self.claims.user, self.claims.role)
        self.send(
            Session(
                session_id=self.session_id,
                user=self.claims.user,
                role=self.claims.role,
                expires_at=expires_at,
                token=token,
            )
        )

    async def _refresh_token(self) -> None:
        while True:
            await asyncio.sleep(self.config.token_ttl_s / 2)
            self._send_session()

    def _require_agent(self) -> None:
        if self.claims is None or self.claims.role is not Role.AGENT:
            raise ProtocolError(
                ErrorCode.FORBIDDEN, "only agents may send this message", field="type"
            )
