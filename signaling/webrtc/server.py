"""The WebSocket signaling edge: aiohttp routes, sessions, calls and agents.

Theory of operation. `add_routes` mounts the login endpoints, the WebSocket
at /ws and the browser pages, and returns the `WebRtcServer` that owns every
call, agent record and background task. Each WebSocket is one
`SignalingSession` (session.py), which logs in, rate-limits, parses and
dispatches messages and answers every bad one with an `error` message.

Calls and agent records belong to the server, not to a socket, so that a
browser can reconnect its signaling without losing them: messages for a
user go to that user's newest session. When a user has had no session for
`reconnect_grace_s`, their calls end and an agent goes offline.

The application plugs in through `WebRtcCallHandler`: a caller's call runs
in `on_call`, and `WebRtcServer.offer_call` offers a call to an agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSCloseCode, web

from signaling.webrtc.agents import AgentPresence
from signaling.webrtc.auth import Claims, LoginHandlers, TokenSigner
from signaling.webrtc.call import LegState, WebRtcCall, WebRtcTransport
from signaling.webrtc.config import WebRtcConfig
from signaling.webrtc.peer import accept_offer, add_remote_candidate, create_peer
from signaling.webrtc.protocol import (
    AgentState,
    Answer,
    CallState,
    CallStateMessage,
    Candidate,
    ErrorCode,
    Hangup,
    Incoming,
    Message,
    Offer,
    Presence,
    ProtocolError,
    Role,
    TransferKind,
    error_message,
)
from signaling.webrtc.session import SignalingSession

logger = logging.getLogger("webrtc")

SERVER_KEY: web.AppKey[WebRtcServer] = web.AppKey("webrtc_server")

_CALL_STATES = {
    LegState.CONNECTING: CallState.RINGING,
    LegState.CONNECTED: CallState.CONNECTED,
    LegState.HELD: CallState.HELD,
    LegState.ENDED: CallState.ENDED,
}


class WebRtcCallHandler(Protocol):
    """Callbacks through which the application takes part in browser calls."""

    async def on_call(self, call: WebRtcCall) -> None:
        """Run a browser caller's call; the server hangs up when this returns."""
        ...

    async def on_transfer(self, call: WebRtcCall, kind: TransferKind, target: str) -> bool:
        """Blind-transfer `call`; True once done (the server then ends this leg).

        False, or a raised `ProtocolError` whose message and field the
        agent's page shows, leaves the call up.
        """
        ...

    def on_call_state(self, call: WebRtcCall) -> None:
        """Learn that a call was connected, held, resumed or ended."""
        ...

    def on_agent_state(self, presence: Presence) -> None:
        """Learn an agent's new state."""
        ...


def _default_static_dir() -> Path:
    return Path(str(importlib.resources.files("voxgate"))) / "static"


def add_routes(
    app: web.Application, config: WebRtcConfig, handler: WebRtcCallHandler
) -> WebRtcServer:
    """Mount the signaling edge on `app` and return the server that owns its calls.

    Routes: POST /api/webrtc/login, POST /api/webrtc/guest, GET /ws, GET /
    (caller page), GET /agent (agent page) and /static/ (page assets).
    The server closes its calls when the application shuts down.
    """
    server = WebRtcServer(config, handler)
    app[SERVER_KEY] = server
    static_dir = Path(config.static_dir) if config.static_dir else _default_static_dir()
    logins = server.logins
    app.router.add_post("/api/webrtc/login", logins.login)
    app.router.add_post("/api/webrtc/guest", logins.guest)
    app.router.add_get("/ws", server.websocket)

    async def caller_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(static_dir / "caller.html")

    async def agent_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(static_dir / "agent.html")

    app.router.add_get("/", caller_page)
    app.router.add_get("/agent", agent_page)
    app.router.add_static("/static/", static_dir)

    async def close_server(app: web.Application) -> None:
        await server.close()

    app.on_shutdown.append(close_server)
    return server


class WebRtcServer:
    """Owns the sessions, calls, agent records and tasks of the signaling edge."""

    def __init__(
        self,
        config: WebRtcConfig,
        handler: WebRtcCallHandler,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.handler = handler
        self.clock = clock
        self.signer = TokenSigner(config.token_secret, config.token_ttl_s, clock)
        self.logins = LoginHandlers(
            self.signer,
            config.users,
            guest_callers=config.guest_callers,
            origin_allowed=self.origin_allowed,
            clock=clock,
        )
        self.calls: dict[str, WebRtcCall] = {}
        self.agents: dict[str, AgentPresence] = {}
        self._sessions: dict[str, SignalingSession] = {}
        self._pending_offers: dict[str, tuple[str, asyncio.Future[Offer | None]]] = {}
        self._early_candidates: dict[str, list[Candidate]] = {}
        self._opening: dict[str, str] = {}
        self._withdrawn: dict[str, str] = {}
        self.rejected_origins = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def origin_allowed(self, origin: str | None) -> bool:
        return origin is not None and origin in self.config.allowed_origins

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """Upgrade to a signaling WebSocket after checking the Origin header."""
        if not self.origin_allowed(request.headers.get("Origin")):
            self.rejected_origins += 1
            if self.rejected_origins % 100 == 1:
                logger.warning(
                    "websocket rejected: origin not allowed (%d so far)", self.rejected_origins
                )
            raise web.HTTPForbidden(text="origin not allowed")
        ws = web.WebSocketResponse(
            heartbeat=30.0,
            max_msg_size=4 * self.config.max_message_bytes,
        )
        await ws.prepare(request)
        session = SignalingSession(self, ws)
        try:
            await session.run()
        finally:
            self._session_closed(session)
        return ws

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a task owned by the server; it is cancelled in `close`."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def close(self) -> None:
        """End every call, close every signaling session as going away and stop every task.

        Closing the sessions lets the HTTP server stop at once: it waits for open WebSockets
        otherwise (30 s was seen with one agent page open).
        """
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for call in list(self.calls.values()):
            await call.hangup("server shutdown")
        for session in list(self._sessions.values()):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await session.close(WSCloseCode.GOING_AWAY, "server shutdown")
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- sessions -------------------------------------------------------

    def session_started(self, session: SignalingSession, claims: Claims) -> None:
        previous = self._sessions.get(claims.user)
        self._sessions[claims.user] = session
        grace = self._timers.pop(f"grace:{claims.user}", None)
        if grace is not None:
            grace.cancel()
        if previous is not None and previous is not session:
            logger.info("session replaced by a newer login")
            self.spawn(previous.close(4000, "replaced by a newer session"), "webrtc-close-old")
        if claims.role is Role.AGENT:
            agent = self.agents.get(claims.user)
            if agent is None:
                agent = AgentPresence(user=claims.user, wrap_up_s=self.config.wrap_up_s)
                self.agents[claims.user] = agent
                agent.change(AgentState.AWAY, "logged in", self.clock())
                self.handler.on_agent_state(agent.presence())
            session.send(agent.presence())
        for call in self.calls.values():
            if call.user == claims.user:
                session.send(CallStateMessage(call.call_id, _CALL_STATES[call.state], call.reason))

    def _session_closed(self, session: SignalingSession) -> None:
        user = session.claims.user if session.claims else None
        if user is None or self._sessions.get(user) is not session:
            return
        del self._sessions[user]
        loop = asyncio.get_running_loop()
        self._timers[f"grace:{user}"] = loop.call_later(
            self.config.reconnect_grace_s, self._grace_expired, user
        )

    def _grace_expired(self, user: str) -> None:
        self._timers.pop(f"grace:{user}", None)
        if user in self._sessions:
            return
        logger.info("signaling did not come back, ending the user's calls")
        for owner, ringing in self._pending_offers.values():
            if owner == user and not ringing.done():
                ringing.set_result(None)
        for call in list(self.calls.values()):
            if call.user == user:
                self.spawn(call.hangup("signaling lost"), f"webrtc-hangup-{call.call_id}")
        agent = self.agents.pop(user, None)
        # An agent set offline by the application (moved to another node) is offline already.
        if agent is not None and agent.state is not AgentState.OFFLINE:
            self._cancel_timer(f"wrap:{user}")
            agent.change(AgentState.OFFLINE, "signaling lost", self.clock())
            self.handler.on_agent_state(agent.presence())

    def send_to(self, user: str, message: Message) -> bool:
        session = self._sessions.get(user)
        if session is None:
            return False
        session.send(message)
        return True

    # -- calls ----------------------------------------------------------

    async def open_call(self, user: str, role: Role, call_id: str, to: str, sdp: str) -> WebRtcCall:
        """Create the peer connection for a browser's offer and send the answer."""
        if call_id in self.calls or call_id in self._opening:
            raise ProtocolError(
                ErrorCode.BAD_STATE, "call_id is already in use", field="call_id", call_id=call_id
            )
        if len(self.calls) + len(self._opening) >= self.config.max_calls:
            logger.warning("call rejected: node at max_calls=%d", self.config.max_calls)
            raise ProtocolError(
                ErrorCode.OVERLOADED, "server is at capacity, retry later", call_id=call_id
            )
        users_calls = sum(1 for call in self.calls.values() if call.user == user)
        users_calls += sum(1 for owner in self._opening.values() if owner == user)
        if users_calls >= self.config.max_calls_per_user:
            raise ProtocolError(
                ErrorCode.BAD_STATE,
                f"at most {self.config.max_calls_per_user} calls per user",
                call_id=call_id,
            )
        self._opening[call_id] = user
        try:
            return await self._open_call(user, role, call_id, to, sdp)
        finally:
            del self._opening[call_id]

    async def _open_call(
        self, user: str, role: Role, call_id: str, to: str, sdp: str
    ) -> WebRtcCall:
        pc = create_peer(self.config)
        transport = WebRtcTransport(pc, self.config.audio_rate, call_id=call_id)
        call = WebRtcCall(
            call_id=call_id,
            role=role,
            user=user,
            to=to,
            transport=transport,
            notify=self._call_changed,
        )

        @pc.on("track")
        def on_track(track: Any) -> None:
            transport.start_receiving(track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            logger.debug("peer state %s call_id=%s", pc.connectionState, call_id)
            if pc.connectionState == "connected":
                call.connected()
            elif pc.connectionState in ("failed", "closed"):
                await call.hangup("media " + pc.connectionState)

        try:
            accepted = await accept_offer(pc, sdp, transport.outbound, self.config, call_id=call_id)
        except ProtocolError:
            await pc.close()
            raise
        transport.intercept_telephone_events(accepted.transceiver, accepted.telephone_events)
        self.calls[call_id] = call
        for candidate in self._early_candidates.pop(call_id, []):
            try:
                await add_remote_candidate(pc, candidate, allow_mdns=self.config.allow_mdns)
            except ProtocolError as exc:
                self.send_to(user, error_message(exc))
        self.send_to(user, Answer(call_id=call_id, sdp=accepted.sdp))
        logger.info("call answered call_id=%s role=%s", call_id, role.value)
        return call

    def _call_changed(self, call: WebRtcCall) -> None:
        self.send_to(
            call.user, CallStateMessage(call.call_id, _CALL_STATES[call.state], call.reason)
        )
        if call.state is LegState.ENDED:
            self.calls.pop(call.call_id, None)
            self.send_to(call.user, Hangup(call_id=call.call_id, reason=call.reason))
            agent = self.agents.get(call.user)
            if call.role is Role.AGENT and agent is not None and agent.state is AgentState.BUSY:
                self.set_agent_state(agent, AgentState.WRAP_UP, "after call")
        self.handler.on_call_state(call)

    async def run_caller_call(self, call: WebRtcCall) -> None:
        try:
            await self.handler.on_call(call)
        except Exception:
            logger.exception("call handler failed call_id=%s", call.call_id)
        finally:
            await call.hangup("completed")

    async def transfer_call(self, call: WebRtcCall, kind: TransferKind, target: str) -> None:
        """Run the handler's blind transfer of an agent's `call` and report a failure.

        A done transfer ends the agent's leg with reason `transferred`. A
        failure goes to the agent as an `error` with the call's id, and the
        call stays up.
        """
        try:
            done = await self.handler.on_transfer(call, kind, target)
        except ProtocolError as exc:
            failure = exc
        except Exception:
            logger.exception("transfer handler failed call_id=%s", call.call_id)
            failure = ProtocolError(
                ErrorCode.INTERNAL, "internal error, the call was not transferred", field="type"
            )
        else:
            if done:
                await call.hangup("transferred")
                return
            failure = ProtocolError(
                ErrorCode.BAD_STATE, "transfer was not accepted", field="target"
            )
        if failure.call_id is None:
            failure.call_id = call.call_id
        self.send_to(call.user, error_message(failure))

    def find_call(self, user: str, call_id: str) -> WebRtcCall:
        call = self.calls.get(call_id)
        if call is None or call.user != user:
            raise ProtocolError(
                ErrorCode.NOT_FOUND, "no such call", field="call_id", call_id=call_id
            )
        return call

    # -- agents ---------------------------------------------------------

    def set_agent_state(self, agent: AgentPresence, state: AgentState, reason: str) -> None:
        """Change an agent's state, arm or cancel the wrap-up timer and publish it."""
        agent.change(state, reason, self.clock())
        key = f"wrap:{agent.user}"
        self._cancel_timer(key)
        if state is AgentState.WRAP_UP:
            loop = asyncio.get_running_loop()
            self._timers[key] = loop.call_later(agent.wrap_up_s, self._wrap_up_over, agent)
        self.send_to(agent.user, agent.presence())
        self.handler.on_agent_state(agent.presence())

    def _wrap_up_over(self, agent: AgentPresence) -> None:
        self._timers.pop(f"wrap:{agent.user}", None)
        if agent.state is AgentState.WRAP_UP:
            self.set_agent_state(agent, AgentState.AVAILABLE, "wrap-up time over")

    def _cancel_timer(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def offer_call(
        self, user: str, incoming: Incoming, timeout_s: float | None = None
    ) -> WebRtcCall | None:
        """Ring an available agent with `incoming`; return the answered call or None.

        None when the agent is not available, rejects, or does not answer in
        `timeout_s` (default `ring_timeout_s`; the agent then goes away with
        reason "missed call"), or when `cancel_offer` withdraws the call.
        Cancelling this coroutine withdraws the call from the agent too.
        """
        agent = self.agents.get(user)
        if agent is None or agent.state is not AgentState.AVAILABLE:
            return None
        if user not in self._sessions:
            return None
        call_id = incoming.call_id
        future: asyncio.Future[Offer | None] = asyncio.get_running_loop().create_future()
        self._pending_offers[call_id] = (user, future)
        self.set_agent_state(agent, AgentState.RINGING, "")
        self.send_to(user, incoming)
        timeout = self.config.ring_timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(timeout):
                offer = await future
        except TimeoutError:
            self.send_to(user, Hangup(call_id=call_id, reason="not answered"))
            self.set_agent_state(agent, AgentState.AWAY, "missed call")
            return None
        except asyncio.CancelledError:
            self._withdrawn[call_id] = "offer withdrawn"
            self._end_ringing(agent, call_id)
            raise
        finally:
            self._pending_offers.pop(call_id, None)
        if offer is None:
            self._end_ringing(agent, call_id)
            return None
        try:
            call = await self.open_call(user, Role.AGENT, call_id, incoming.caller, offer.sdp)
        except ProtocolError as exc:
            self._early_candidates.pop(call_id, None)
            self.send_to(user, error_message(exc))
            self.set_agent_state(agent, AgentState.AVAILABLE, "call setup failed")
            return None
        call.context = {"incoming": incoming}
        self.set_agent_state(agent, AgentState.BUSY, "")
        return call

    def _end_ringing(self, agent: AgentPresence, call_id: str) -> None:
        """Clean up a ring that ended without an answer (rejected, withdrawn, agent lost)."""
        self._early_candidates.pop(call_id, None)
        withdrawn = self._withdrawn.pop(call_id, None)
        if agent.presence().state is not AgentState.RINGING:
            return
        if withdrawn is None:
            self.set_agent_state(agent, AgentState.AVAILABLE, "rejected a call")
            return
        self.send_to(agent.user, Hangup(call_id=call_id, reason=withdrawn))
        self.set_agent_state(agent, AgentState.AVAILABLE, withdrawn)

    def cancel_offer(self, call_id: str, reason: str = "caller left") -> bool:
        """Stop ringing an agent for `call_id` (the caller hung up, or another agent took it).

        The ringing `offer_call` returns None, the agent's page gets `hangup`
        with `reason` and the agent becomes available again. False when the
        call is not ringing.
        """
        pending = self._pending_offers.get(call_id)
        if pending is None or pending[1].done():
            return False
        self._withdrawn[call_id] = reason
        pending[1].set_result(None)
        return True

    def resolve_pending(self, user: str, call_id: str, offer: Offer | None) -> bool:
        pending = self._pending_offers.get(call_id)
        if pending is None or pending[0] != user or pending[1].done():
            return False
        pending[1].set_result(offer)
        if offer is not None:
            self._early_candidates[call_id] = []
        return True

    def keep_early_candidate(self, user: str, message: Candidate) -> bool:
        """Hold a candidate that arrived while its call's offer is still being applied.

        An agent's browser trickles candidates right after its offer, but the
        offer is applied by the task in `offer_call`, so they can arrive first.
        """
        early = self._early_candidates.get(message.call_id)
        pending = self._pending_offers.get(message.call_id)
        if early is None or (pending is not None and pending[0] != user):
            return False
        if len(early) < 32:
            early.append(message)
        return True
