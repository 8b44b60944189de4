"""In-dialog requests we send, and blind transfer with REFER (RFC 3515).

Theory of operation
-------------------
`ReferCore` adds two things to the UA core. The first is requests that the
application sends in a confirmed dialog (`send_in_dialog`), whose final
response comes back as a `RequestAnswered` event. The second is both sides
of REFER:

* Outbound: `refer` sends REFER with Refer-To and Referred-By. The peer
  answers 202 and reports the transfer in NOTIFY requests (Event: refer)
  whose message/sipfrag body is a status line; each NOTIFY gets 200 and
  becomes a `ReferProgress` event.
* Inbound: a REFER becomes a `ReferReceived` event and waits for the
  application's decision (`answer_refer`): 202 and a first NOTIFY with
  `SIP/2.0 100 Trying`, or 603. The application then reports the outcome
  with `notify_refer`, which sends the final NOTIFY and ends the implicit
  subscription (`Subscription-State: terminated`).

One REFER at a time is served per call; another gets 491.
"""

from __future__ import annotations

import logging
import re

from signaling.sip.dialog import CallState, InviteSession
from signaling.sip.errors import SipSyntaxError, SipUsageError
from signaling.sip.events import ReferProgress, ReferReceived
from signaling.sip.headers import parse_name_addr
from signaling.sip.message import SipRequest
from signaling.sip.routing import in_dialog_peer
from signaling.sip.tokens import random_hex
from signaling.sip.uac import OutboundCore

logger = logging.getLogger("sip.refer")

SIPFRAG = "message/sipfrag;version=2.0"
_SIPFRAG_RE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9])(?: |\r|\n|$)")


def sipfrag_status(body: bytes) -> int | None:
    """Return the status code of a message/sipfrag status line, or None if it has none."""
    match = _SIPFRAG_RE.match(body[:200].decode("utf-8", "replace"))
    return int(match.group(1)) if match else None


def sipfrag(status: int, reason: str) -> bytes:
    return f"SIP/2.0 {status} {reason}\r\n".encode()


class ReferCore(OutboundCore):
    """In-dialog requests and REFER; see the module docstring."""

    def _session(self, handle: str) -> InviteSession:
        session = self.calls.get(handle)
        if session is None:
            raise SipUsageError(f"unknown call {handle}")
        return session

    def send_in_dialog(
        self,
        handle: str,
        method: str,
        now: float,
        body: bytes = b"",
        content_type: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> str | None:
        """Send a request in the call's dialog; return its client transaction key.

        The final response arrives as `RequestAnswered` with that key (408
        on a timeout). Raise `SipUsageError` when the call has no confirmed
        dialog.
        """
        self._now = max(self._now, now)
        session = self._session(handle)
        if session.state is not CallState.CONFIRMED or session.dialog is None:
            raise SipUsageError(f"call {handle}: {method} needs a confirmed dialog")
        key = self._send_request(session, method, body, content_type, extra)
        if key is not None:
            self._client_owner[key] = f"dialog:{handle}"
        return key

    def _send_request(
        self,
        session: InviteSession,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> str | None:
        dialog = session.dialog
        source = self._call_peer.get(session.handle)
        if dialog is None or source is None:
            return None
        peer = in_dialog_peer(dialog, source)
        branch = "z9hG4bK" + random_hex(16)  # `new_branch` inlined
        headers = [("User-Agent", self.config.user_agent), *(extra or ())]
        if method in ("REFER", "NOTIFY"):
            # RFC 3515 §2.1 and RFC 6665 §8.2.1: both carry a Contact.
            headers.append(("Contact", self._contact(peer)))
        # `_via` inlined for a transport whose Via prefix is built already.
        prefix = self._via_prefix.get(peer.transport)
        via = f"{prefix};branch={branch};rport" if prefix is not None else self._via(branch, peer)
        request = dialog.build_request(
            method, via, extra=headers, body=body, content_type=content_type
        )
        return self._start_client(request, branch, peer)

    # ----- outbound REFER

    def refer(self, handle: str, target_uri: str, now: float) -> str | None:
        """Send REFER asking the peer to call `target_uri` (RFC 3515 §2.4.1).

        Return the REFER's transaction key; its final response arrives as
        `RequestAnswered` and the peer's NOTIFYs as `ReferProgress`.
        Raise `SipUsageError` for a target that is not a SIP or tel URI.
        """
        session = self._session(handle)
        try:
            parse_name_addr(f"<{target_uri}>")
        except SipSyntaxError as error:
            raise SipUsageError(f"invalid transfer target: {error.reason}") from None
        if any(char in target_uri for char in "<>\r\n\0 "):
            raise SipUsageError("invalid transfer target: unescaped <, >, space or line break")
        dialog = session.dialog
        referred_by = f"<{dialog.local_uri}>" if dialog is not None else None
        extra = [("Refer-To", f"<{target_uri}>")]
        if referred_by is not None:
            extra.append(("Referred-By", referred_by))
        logger.info("call %s: sending REFER", handle)
        return self.send_in_dialog(handle, "REFER", now, extra=extra)

    def _on_notify(self, session: InviteSession, request: SipRequest, key: str) -> None:
        event = (request.headers.get("Event") or "").split(";", 1)[0].strip().lower()
        if event != "refer":
            # RFC 6665 §4.1.3: a NOTIFY for an event we never subscribed to.
            self._respond(key, 489)
            return
        self._respond(key, 200)
        status = sipfrag_status(request.body)
        state = (request.headers.get("Subscription-State") or "").split(";", 1)[0].strip()
        logger.info("call %s: transfer progress %s (%s)", session.handle, status, state)
        if status is None:
            return
        final = status >= 200 or state.lower() == "terminated"
        self._events.append(ReferProgress(session.handle, status, final))

    # ----- inbound REFER

    def _on_refer(self, session: InviteSession, request: SipRequest, key: str) -> None:
        values = request.headers.raw("Refer-To")
        if len(values) != 1:
            self._respond(key, 400, "Bad Request (exactly one Refer-To expected)")
            return
        try:
            target = parse_name_addr(values[0])
        except SipSyntaxError as error:
            self._respond(key, 400, f"Bad Request (invalid Refer-To: {error.reason})")
            return
        if session.refer_key is not None or session.refer_pending:
            self._respond(key, 491)
            return
        session.refer_key = key
        logger.info("call %s: REFER received", session.handle)
        self._events.append(ReferReceived(session.handle, target.uri_text))

    def answer_refer(self, handle: str, accept: bool, now: float) -> None:
        """Answer the pending REFER: 202 and a NOTIFY with 100 Trying, or 603."""
        self._now = max(self._now, now)
        session = self._session(handle)
        key, session.refer_key = session.refer_key, None
        if key is None:
            raise SipUsageError(f"call {handle}: no pending REFER")
        if not accept:
            self._respond(key, 603)
            return
        self._respond(key, 202, contact=True)
        session.refer_pending = True
        self._notify(session, sipfrag(100, "Trying"), "active;expires=60")

    def notify_refer(self, handle: str, status: int, reason: str, now: float) -> None:
        """Report the transfer's outcome to the referrer and end the subscription."""
        self._now = max(self._now, now)
        session = self.calls.get(handle)
        if session is None or not session.refer_pending:
            return
        session.refer_pending = False
        self._notify(session, sipfrag(status, reason), "terminated;reason=noresource")

    def _notify(self, session: InviteSession, body: bytes, state: str) -> None:
        extra = [("Event", "refer"), ("Subscription-State", state)]
        self._send_request(session, "NOTIFY", body, SIPFRAG, extra)
