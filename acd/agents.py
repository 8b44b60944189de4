"""The agent state machine.

    LOGGED_OUT -> AVAILABLE | AWAY                        (login)
    AVAILABLE  -> OFFERED                                 (dispatcher reserves a caller)
    OFFERED    -> ON_CALL                                 (answer: claim_bridge)
    OFFERED    -> AVAILABLE | AWAY                        (decline, ring timeout, caller left)
    ON_CALL    -> WRAP_UP | AVAILABLE                     (hangup; AVAILABLE with no wrap-up)
    WRAP_UP    -> AVAILABLE                               (wrap-up time over)
    any        -> AVAILABLE | AWAY                        (agent's own choice, see below)
    any        -> LOGGED_OUT                              (logout, node lost)

An agent may choose AVAILABLE or AWAY only from AVAILABLE, AWAY or WRAP_UP: an offer must be
answered or declined and a call hung up first. No state but AVAILABLE (and WRAP_UP once its
time is over) receives offers, in any of the agent's queues.
"""

from __future__ import annotations

import logging

from acd.model import AgentState

log = logging.getLogger("queues")

TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    AgentState.LOGGED_OUT: frozenset({AgentState.AVAILABLE, AgentState.AWAY}),
    AgentState.AVAILABLE: frozenset(
        {AgentState.AVAILABLE, AgentState.OFFERED, AgentState.AWAY, AgentState.LOGGED_OUT}
    ),
    AgentState.OFFERED: frozenset(
        {AgentState.ON_CALL, AgentState.AVAILABLE, AgentState.AWAY, AgentState.LOGGED_OUT}
    ),
    AgentState.ON_CALL: frozenset(
        {AgentState.WRAP_UP, AgentState.AVAILABLE, AgentState.LOGGED_OUT}
    ),
    AgentState.WRAP_UP: frozenset(
        {AgentState.AVAILABLE, AgentState.OFFERED, AgentState.AWAY, AgentState.LOGGED_OUT}
    ),
    AgentState.AWAY: frozenset({AgentState.AVAILABLE, AgentState.AWAY, AgentState.LOGGED_OUT}),
}

CHOOSABLE_FROM = frozenset({AgentState.AVAILABLE, AgentState.AWAY, AgentState.WRAP_UP})
CHOOSABLE = frozenset({AgentState.AVAILABLE, AgentState.AWAY})
# A login never replaces a record in these states, so no offer or call loses its agent.
BUSY = frozenset({AgentState.OFFERED, AgentState.ON_CALL})


class AgentStateError(Exception):
    """An agent request that its current state does not allow."""


class AgentBusyError(AgentStateError):
    """A login rejected because the agent's record, on node `node_id`, has an offer or a call."""

    def __init__(self, agent_id: str, node_id: str, state: AgentState) -> None:
        super().__init__(f"agent {agent_id} is {state.value} on node {node_id}")
        self.agent_id = agent_id
        self.node_id = node_id
        self.state = state


def check_transition(agent_id: str, old: AgentState, new: AgentState, event: str) -> None:
    """Raise AgentStateError when `event` may not move the agent from `old` to `new`."""
    if new not in TRANSITIONS[old]:
        raise AgentStateError(
            f"agent {agent_id}: {event} is not allowed in state {old.value} (to {new.value})"
        )


def log_transition(agent_id: str, old: AgentState, new: AgentState, reason: str) -> None:
    log.info("agent %s: %s -> %s (%s)", agent_id, old.value, new.value, reason or "-")
