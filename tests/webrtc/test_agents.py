"""Agent presence transitions."""

from __future__ import annotations

import pytest

from signaling.webrtc.agents import AgentPresence
from signaling.webrtc.protocol import AgentState, ErrorCode, ProtocolError


def test_call_cycle_sets_wrap_up_deadline() -> None:
    agent = AgentPresence(user="alice", wrap_up_s=45)
    for state in (AgentState.AVAILABLE, AgentState.RINGING, AgentState.BUSY):
        agent.change(state, "", 100.0)
    agent.change(AgentState.WRAP_UP, "after call", 200.0)
    assert agent.wrap_up_until == 245.0
    assert agent.presence().wrap_up_s == 45
    agent.change(AgentState.AVAILABLE, "", 210.0)
    assert agent.wrap_up_until is None


def test_away_keeps_reason_and_time() -> None:
    agent = AgentPresence(user="alice")
    agent.change(AgentState.AWAY, "lunch", 5.0)
    presence = agent.presence()
    assert presence.state is AgentState.AWAY
    assert presence.reason == "lunch"
    assert presence.since == 5.0


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([AgentState.AWAY], AgentState.BUSY),
        ([AgentState.AVAILABLE, AgentState.RINGING, AgentState.BUSY], AgentState.AVAILABLE),
        ([AgentState.AVAILABLE, AgentState.RINGING, AgentState.BUSY], AgentState.AWAY),
        ([], AgentState.RINGING),
    ],
)
def test_illegal_transition_names_both_states(path: list[AgentState], illegal: AgentState) -> None:
    agent = AgentPresence(user="alice")
    for state in path:
        agent.change(state, "", 1.0)
    before = agent.state
    with pytest.raises(ProtocolError) as info:
        agent.change(illegal, "", 2.0)
    assert info.value.code is ErrorCode.BAD_STATE
    assert before.value in info.value.message
    assert illegal.value in info.value.message
    assert agent.state is before
