"""Agent presence as the WebRTC edge stores it, independent of any WebSocket.

One `AgentPresence` per logged-in user name survives signaling reconnects:
a new WebSocket for the same user takes over the record and is sent its
current state. Transitions (client requests and call events alike) go
through `AgentPresence.change`, which checks the table below and logs
old -> new. Wrap-up ends at `wrap_up_until`; the server arms that timer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from signaling.webrtc.protocol import AgentState, ErrorCode, Presence, ProtocolError

logger = logging.getLogger("webrtc")

S = AgentState
_TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    S.OFFLINE: frozenset({S.AVAILABLE, S.AWAY}),
    S.AVAILABLE: frozenset({S.AWAY, S.RINGING, S.OFFLINE, S.WRAP_UP}),
    S.AWAY: frozenset({S.AVAILABLE, S.OFFLINE, S.AWAY}),
    S.RINGING: frozenset({S.BUSY, S.AVAILABLE, S.AWAY, S.OFFLINE}),
    S.BUSY: frozenset({S.WRAP_UP, S.OFFLINE}),
    S.WRAP_UP: frozenset({S.AVAILABLE, S.AWAY, S.OFFLINE, S.WRAP_UP}),
}


@dataclass(slots=True)
class AgentPresence:
    """The state of one agent; times are Unix seconds from the caller's clock."""

    user: str
    wrap_up_s: int = 30
    state: AgentState = AgentState.OFFLINE
    reason: str = ""
    since: float = 0.0
    wrap_up_until: float | None = None

    def change(self, new: AgentState, reason: str, now: float) -> None:
        """Move to `new`; raise ProtocolError (bad_state) for a transition not in the table."""
        if new not in _TRANSITIONS[self.state]:
            raise ProtocolError(
                ErrorCode.BAD_STATE,
                f"cannot change agent state from {self.state.value} to {new.value}",
                field="state",
            )
        logger.info("agent state %s -> %s", self.state.value, new.value)
        self.state = new
        self.reason = reason
        self.since = now
        self.wrap_up_until = now + self.wrap_up_s if new is AgentState.WRAP_UP else None

    def presence(self) -> Presence:
        wrap_up = int(self.wrap_up_s) if self.state is AgentState.WRAP_UP else 0
        return Presence(
            user=self.user,
            state=self.state,
            reason=self.reason,
            since=self.since,
            wrap_up_s=wrap_up,
        )
