"""Session refreshes that we send as the refresher (RFC 4028 §7.4, §10).

When the 2xx to our INVITE names us the refresher (`refresher=uac`), the
call is refreshed at half the negotiated interval. The refresh is an UPDATE
without a body when the peer allows UPDATE (RFC 4028 §7.4 prefers it), else
a re-INVITE that repeats our last SDP and gets its own ACK.

A 2xx re-arms the refresh with the interval it grants, and 491 retries
after two seconds. 408, 481 or no response ends the call with BYE (reason
`timeout`), because the session is gone at the peer. Any other failure is
logged and retried at a quarter of the interval.
"""

from __future__ import annotations

import logging

from signaling.sip.dialog import CallState, InviteSession, new_branch
from signaling.sip.message import SipResponse, to_bytes
from signaling.sip.refer import ReferCore
from signaling.sip.routing import Outgoing, in_dialog_peer
from signaling.sip.transaction import ClientInviteTransaction, client_key

logger = logging.getLogger("sip.refresh")

RETRY_AFTER_GLARE = 2.0


def session_expires_of(response: SipResponse) -> tuple[int, str] | None:
    """Return (interval, refresher) of a Session-Expires header, or None if absent or invalid."""
    value = response.headers.get("Session-Expires")
    if value is None:
        return None
    interval, _, params = value.partition(";")
    if not interval.strip().isdigit():
        return None
    refresher = ""
    for param in params.split(";"):
        name, _, setting = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = setting.strip().lower()
    return int(interval.strip()), refresher


class RefreshCore(ReferCore):
    """Refreshes for outbound calls where we are the refresher; see the module docstring."""

    def _start_refreshing(
        self, session: InviteSession, interval: int, response: SipResponse
    ) -> None:
        allow = ",".join(response.headers.get_list("Allow")).upper()
        session.refresh_interval = interval
        session.refresh_with_update = "UPDATE" in allow.replace(" ", "").split(",")
        self._arm("call", session.handle, "refresh", self._now + interval / 2)

    def _send_refresh(self, session: InviteSession) -> None:
        dialog = session.dialog
        source = self._call_peer.get(session.handle)
        if dialog is None or source is None or session.state is not CallState.CONFIRMED:
            return
        interval = session.refresh_interval
        extra = [("Session-Expires", f"{interval};refresher=uac"), ("Supported", "timer")]
        if session.refresh_with_update:
            logger.debug("call %s: refreshing the session with UPDATE", session.handle)
            key = self._send_request(session, "UPDATE", extra=extra)
            if key is not None:
                self._client_owner[key] = f"refresh:{session.handle}"
            return

        peer = in_dialog_peer(dialog, source)
        branch = new_branch()
        headers = [
            ("User-Agent", self.config.user_agent),
            ("Contact", self._contact(peer)),
            *extra,
        ]
        request = dialog.build_request(
            "INVITE",
            self._via(branch, peer),
            extra=headers,
            body=session.local_sdp or b"",
            content_type="application/sdp" if session.local_sdp else None,
        )
        key = client_key(branch, "INVITE")
        transaction = ClientInviteTransaction(key, request, peer.reliable, self.config.timers)
        self._client[key] = transaction
        self._client_peer[key] = peer
        self._client_owner[key] = f"refresh:{session.handle}"
        session.refresh_cseq = dialog.local_seq
        logger.debug("call %s: refreshing the session with re-INVITE", session.handle)
        self._apply(key, transaction.start(), client=True)

    def _on_refresh_response(self, handle: str, key: str, response: SipResponse) -> None:
        session = self.calls.get(handle)
        if session is None or session.dialog is None or response.status < 200:
            return
        if key.endswith("|INVITE") and response.status < 300:
            self._ack_refresh(session, key)
        if response.status < 300:
            granted = session_expires_of(response)
            if granted is not None and granted[0] > 0:
                session.refresh_interval = granted[0]
            self._arm("call", handle, "refresh", self._now + session.refresh_interval / 2)
        elif response.status == 491:
            self._arm("call", handle, "refresh", self._now + RETRY_AFTER_GLARE)
        elif response.status in (408, 481):
            self._refresh_failed(session, response.status)
        else:
            logger.warning(
                "call %s: session refresh failed with status %s; retrying", handle, response.status
            )
            self._arm("call", handle, "refresh", self._now + session.refresh_interval / 4)

    def _ack_refresh(self, session: InviteSession, key: str) -> None:
        """Send (again) the ACK for the 2xx to a refresh re-INVITE (§13.2.2.4)."""
        dialog = session.dialog
        peer = self._client_peer.get(key)
        if dialog is None or peer is None or session.refresh_cseq is None:
            return
        ack = dialog.build_request("ACK", self._via(new_branch(), peer))
        ack.headers.set("CSeq", f"{session.refresh_cseq} ACK")
        self._outgoing.append(Outgoing(to_bytes(ack), peer))

    def _refresh_failed(self, session: InviteSession, status: int) -> None:
        logger.warning(
            "call %s: session refresh failed with %s; sending BYE", session.handle, status
        )
        self._end_answered(session, "timeout")
