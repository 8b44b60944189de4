"""Destinations of SIP messages: transport peers and the response rules of §18.2.2 and RFC 3581."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from signaling.sip.dialog import Dialog
from signaling.sip.errors import SipSyntaxError
from signaling.sip.headers import parse_name_addr, parse_via, split_list
from signaling.sip.message import SipRequest


@dataclass(frozen=True, slots=True)
class Peer:
    """A transport address that a message came from or goes to.

    `connection` identifies the TCP connection for stream transports.
    """

    transport: str
    host: str
    port: int
    connection: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


# Not frozen, because the core builds one per datagram it sends, and a frozen
# dataclass sets its fields through object.__setattr__: its two-field __init__
# took about 3 times as long (timeit, CPython 3.11). Outgoing is unhashable.
@dataclass(slots=True)
class Outgoing:
    data: bytes
    peer: Peer


@functools.lru_cache(maxsize=256)
def is_ip(host: str) -> bool:
    """Return whether `host` is an IPv4 or IPv6 literal (cached: peers repeat their hosts)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def stamp_via(request: SipRequest, peer: Peer) -> None:
    """Add `received` and fill `rport` in the top Via (§18.2.1, RFC 3581 §4)."""
    # `parsed` raises for a request the parser did not validate.
    via = (request.info if request.info is not None else request.parsed).vias[0]
    changed = False
    # RFC 3581 §4: with rport, received is added even when the host matches.
    if via.host.strip("[]") != peer.host or "rport" in via.params:
        via.params["received"] = peer.host
        changed = True
    if "rport" in via.params:
        via.params["rport"] = str(peer.port)
        changed = True
    if not changed:
        return
    fields = request.headers.raw("Via")
    elements = split_list(fields[0])
    elements[0] = str(via)
    fields[0] = ", ".join(elements)
    request.headers.remove("Via")
    for value in fields:
        request.headers.add("Via", value)


def response_peer(request: SipRequest, peer: Peer, force_rport: bool) -> Peer:
    """Pick where responses to `request` go.

    Streams answer on the same connection while it is open, else on a new
    one to the source address and the Via port. Over UDP the response goes to the
    source address, and to the source port when the Via has rport or
    `force_rport` is set, else to the Via port (default 5060).
    NOTE: `maddr` in the Via is ignored, so responses never leave for a third
    address that the request named.
    """
    # `Peer.reliable` and `MessageInfo.top_via` inlined, which saves two Python calls.
    reliable = peer.transport != "udp"
    if force_rport and not reliable:
        return peer
    try:
        if request.info is not None:
            via = request.info.vias[0]
        else:
            via = parse_via(request.headers.get_list("Via")[0])
    except (SipSyntaxError, IndexError):
        return peer
    if reliable:
        # §18.2.2: if the connection is gone, a new one goes to the Via port.
        return Peer(peer.transport, peer.host, via.port or 5060, peer.connection)
    if "rport" in via.params:
        return peer
    port = via.port or 5060
    if port == peer.port and peer.connection is None:
        return peer  # It equals the Peer that the next line would build.
    return Peer(peer.transport, peer.host, port)


def in_dialog_peer(dialog: Dialog, source: Peer) -> Peer:
    """Pick where in-dialog requests go.

    NOTE: the stack does not resolve host names. The first Route or the
    remote target is used when its host is an IP address, and otherwise the
    address the dialog's INVITE came from. On TCP and TLS the connection the
    INVITE came on is reused while it is open.
    """
    target = dialog.route_set[0] if dialog.route_set else f"<{dialog.remote_target}>"
    return _in_dialog_peer(target, source)


@functools.lru_cache(maxsize=1024)
def _in_dialog_peer(target: str, source: Peer) -> Peer:
    """Pick where in-dialog requests for the name-addr `target` go (see `in_dialog_peer`).

    It is a pure function of its arguments, cached because the calls from one
    trunk or proxy share their targets and source.
    """
    try:
        uri = parse_name_addr(target).uri
    except SipSyntaxError:
        return source
    if uri is None or not is_ip(uri.bare_host) or "maddr" in uri.params:
        return source
    if source.reliable:
        return Peer(source.transport, uri.bare_host, uri.effective_port(), source.connection)
    if uri.transport != "udp":
        return source
    return Peer("udp", uri.bare_host, uri.effective_port())
