"""Node-to-node bridge tokens: who may ask a node to connect one of its waiting callers.

When an agent on node B answers a caller whose leg is on node A, node B
sends node A an INVITE carrying `BRIDGE_HEADER`. Its value names the waiting
caller's call id, the agent and node B, and an expiry, and is signed with
HMAC-SHA256 under the cluster secret that every node shares:

    X-VoxGate-Bridge: v1;call=<id>;agent=<id>;node=<id>;exp=<unix s>;sig=<hex>

Values are percent-encoded. Node A answers anything else (no secret set, a
bad or missing field, a wrong signature, an expired or far-future expiry)
with 403, so a SIP peer without the secret can never reach a waiting caller.
No I/O here: the clock is an argument.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote, unquote

BRIDGE_HEADER = "X-VoxGate-Bridge"
VERSION = "v1"
MAX_HEADER_LENGTH = 1024
MIN_SECRET_BYTES = 32
FIELDS = ("call", "agent", "node", "exp", "sig")


class BridgeTokenError(ValueError):
    """A bridge header to reject with 403. The message gives the reason and no caller data."""


@dataclass(frozen=True, slots=True)
class BridgeClaim:
    """The grant of a valid bridge header: connect `call_id` to `agent_id` of node `node_id`."""

    call_id: str
    agent_id: str
    node_id: str
    expires: int


def _signature(secret: bytes, claim: BridgeClaim) -> str:
    text = "\n".join((VERSION, claim.call_id, claim.agent_id, claim.node_id, str(claim.expires)))
    return hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_bridge(secret: bytes, claim: BridgeClaim) -> str:
    """Return the `BRIDGE_HEADER` value for `claim`. Raises ValueError for a short secret."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the cluster secret must have at least {MIN_SECRET_BYTES} bytes")
    parts = [
        VERSION,
        f"call={quote(claim.call_id, safe='')}",
        f"agent={quote(claim.agent_id, safe='')}",
        f"node={quote(claim.node_id, safe='')}",
        f"exp={claim.expires}",
        f"sig={_signature(secret, claim)}",
    ]
    return ";".join(parts)


def verify_bridge(secret: bytes | None, value: str, now: float, max_ttl_s: float) -> BridgeClaim:
    """Check a `BRIDGE_HEADER` value at time `now` (Unix seconds) and return its claim.

    The expiry must lie in the future but at most `max_ttl_s` ahead, so a
    token cannot be minted for a long replay window. Raises BridgeTokenError.
    """
    if not secret:
        raise BridgeTokenError("no cluster secret is set on this node")
    if len(value) > MAX_HEADER_LENGTH:
        raise BridgeTokenError(f"bridge header longer than {MAX_HEADER_LENGTH} characters")
    version, _, rest = value.strip().partition(";")
    if version != VERSION:
        raise BridgeTokenError("unknown bridge header version")
    fields: dict[str, str] = {}
    for part in rest.split(";"):
        name, sep, raw = part.strip().partition("=")
        if not sep or name not in FIELDS or name in fields:
            raise BridgeTokenError("malformed bridge header")
        fields[name] = raw
    if set(fields) != set(FIELDS):
        raise BridgeTokenError("bridge header is missing a field")
    try:
        expires = int(fields["exp"])
    except ValueError:
        raise BridgeTokenError("bridge header expiry is not an integer") from None
    claim = BridgeClaim(
        call_id=unquote(fields["call"]),
        agent_id=unquote(fields["agent"]),
        node_id=unquote(fields["node"]),
        expires=expires,
    )
    if not claim.call_id or not claim.agent_id or not claim.node_id:
        raise BridgeTokenError("bridge header has an empty field")
    if not hmac.compare_digest(_signature(secret, claim), fields["sig"]):
        raise BridgeTokenError("bridge header signature does not match")
    if expires <= now:
        raise BridgeTokenError("bridge header expired")
    if expires > now + max_ttl_s:
        raise BridgeTokenError("bridge header expiry is too far ahead")
    return claim
