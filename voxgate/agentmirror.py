"""The mirror of agent presence, from this node's WebRTC edge into the ACD.

Agent presence has one source of truth, the WebRTC edge (the agent's page).
The contact center calls `AgentMirror.sync` under the agent's lock to copy it
into the ACD. Available and away map to themselves, and wrap-up maps to away
with reason `wrap_up`. Offline logs the agent out, and ringing and busy leave
the ACD to the offer in progress.

With a shared store an agent may have pages on two nodes. The newest page
wins and takes the agent's record over, unless that record has an offer or a
call, and an offline page logs out only its own node's record. The page that
lost the agent is set offline when its node hears of the other node's login
(`page_lost_agent`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from acd.agents import BUSY, AgentBusyError, AgentStateError
from acd.model import Agent
from acd.model import AgentState as AcdAgentState
from acd.service import Acd
from signaling.webrtc.agents import AgentPresence
from signaling.webrtc.protocol import AgentState as WebAgentState
from signaling.webrtc.protocol import ErrorCode, ProtocolError, error_message
from signaling.webrtc.server import WebRtcServer

logger = logging.getLogger("queues")

# The presence reason of a page set away because its agent is busy on another node.
BUSY_ELSEWHERE_REASON = "busy on another node"
# The presence reason of a page set offline because another node took its agent over.
MOVED_REASON = "moved to another node"
MOVABLE_PAGE_STATES = frozenset(
    {WebAgentState.AVAILABLE, WebAgentState.AWAY, WebAgentState.WRAP_UP}
)


@dataclass(frozen=True, slots=True)
class AgentAccount:
    """The routing data of one agent for the ACD login: the queues served and the skill levels."""

    queues: tuple[str, ...]
    skills: Mapping[str, int] = field(default_factory=dict)


class AgentMirror:
    """Makes the ACD's agent records follow the agents' pages on this node."""

    def __init__(
        self,
        acd: Acd,
        accounts: Mapping[str, AgentAccount],
        node_skill: str | None,
        webrtc: Callable[[], WebRtcServer | None],
    ) -> None:
        self.acd = acd
        self.accounts = accounts
        # A skill that a login here adds, so that callers of this node reach the agent.
        self.node_skill = node_skill
        self._webrtc = webrtc

    async def sync(self, user: str) -> None:
        """Make the ACD's state of `user` follow the agent's presence on the WebRTC edge.

        With a shared store the agent's record may belong to another node, where the agent
        has another page open. The newest page wins, so a state chosen here takes the agent
        over (logs it in here), unless the record there has an offer or a call. Then the
        page here gets an error message. A page going offline logs out only this node's record.
        """
        server = self._webrtc()
        presence = server.agents.get(user) if server is not None else None
        state = presence.state if presence is not None else WebAgentState.OFFLINE
        if state in (WebAgentState.RINGING, WebAgentState.BUSY):
            return
        try:
            current = await self.acd.store.get_agent(user)
            elsewhere = current is not None and current.node_id != self.acd.node_id
            if state is WebAgentState.OFFLINE:
                if current is not None and not elsewhere:
                    await self.acd.logout(user)
                elif current is not None:
                    logger.info(
                        "agent %s: page offline here, still logged in on node %s",
                        user,
                        current.node_id,
                    )
                return
            target, reason = {
                WebAgentState.AVAILABLE: (AcdAgentState.AVAILABLE, ""),
                WebAgentState.AWAY: (AcdAgentState.AWAY, "away"),
                WebAgentState.WRAP_UP: (AcdAgentState.AWAY, "wrap_up"),
            }[state]
            if current is None or elsewhere:
                await self._log_in_here(user, target, reason, current)
            elif current.state in BUSY:
                return
            elif current.state is not target or current.away_reason != reason:
                await self.acd.set_state(user, target, reason)
        except AgentBusyError as exc:
            self._reject_page(user, presence, exc)
        except (AgentStateError, KeyError, ValueError) as exc:
            logger.info("agent %s: ACD state not updated: %s", user, exc)

    async def page_lost_agent(self, user: str) -> None:
        """Set the agent's page here offline once another node has taken the agent over.

        Offline is a presence that `sync` leaves alone for a record of another node, so the
        two pages never take the agent from each other without the agent acting.
        """
        server = self._webrtc()
        presence = server.agents.get(user) if server is not None else None
        if server is None or presence is None or presence.state not in MOVABLE_PAGE_STATES:
            return
        current = await self.acd.store.get_agent(user)
        if current is None or current.node_id == self.acd.node_id:
            return
        logger.info("agent %s: logged in on node %s, page here set offline", user, current.node_id)
        server.set_agent_state(presence, WebAgentState.OFFLINE, MOVED_REASON)

    async def _log_in_here(
        self, user: str, target: AcdAgentState, reason: str, current: Agent | None
    ) -> None:
        """Log `user` in on this node, taking it over from `current` on another node.

        Raises AgentBusyError when `current` has an offer or a call.
        """
        if current is not None and current.state in BUSY:
            raise AgentBusyError(user, current.node_id, current.state)
        account = self.accounts.get(user)
        if account is None:
            logger.warning("agent %s has no account settings, not routed to", user)
            return
        skills = dict(account.skills)
        if self.node_skill is not None:
            skills[self.node_skill] = 1
        await self.acd.login(user, account.queues, skills, target, reason)
        if current is not None:
            logger.info("agent %s: taken over from node %s", user, current.node_id)

    def _reject_page(self, user: str, presence: AgentPresence | None, busy: AgentBusyError) -> None:
        """Send the agent's page here an error saying that the agent is busy on another node.

        An available page is set away instead, so that it shows that it gets no calls. That
        presence change comes back to `sync`, which then sends the error once.
        """
        logger.info("agent %s: not taken over, %s on node %s", user, busy.state.value, busy.node_id)
        server = self._webrtc()
        if server is None or presence is None:
            return
        if presence.state is WebAgentState.AVAILABLE:
            server.set_agent_state(presence, WebAgentState.AWAY, BUSY_ELSEWHERE_REASON)
            return
        error = ProtocolError(
            ErrorCode.BAD_STATE,
            "you are busy with a call on another node (ringing or connected), so this page "
            "gets no calls. Choose your state here again once that call has ended there.",
            field="state",
        )
        server.send_to(user, error_message(error))
