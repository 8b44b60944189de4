"""A minimal registrar (RFC 3261 §10.3) for digest users such as desk phones.

Bindings live in memory: address of record -> contact URI -> expiry time.
The UA core authenticates the REGISTER first; this module only updates and
reports bindings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from signaling.sip.checks import Rejection
from signaling.sip.message import SipRequest

MIN_EXPIRES = 60
MAX_EXPIRES = 7200
DEFAULT_EXPIRES = 3600
MAX_BINDINGS_PER_AOR = 10


@dataclass(slots=True)
class Registrar:
    bindings: dict[str, dict[str, float]] = field(default_factory=dict)

    def contacts(self, aor: str, now: float) -> list[str]:
        """Return the unexpired contact URIs registered for `aor` (user@host)."""
        return [uri for uri, expiry in self.bindings.get(aor, {}).items() if expiry > now]

    def register(
        self, request: SipRequest, now: float
    ) -> tuple[int, list[tuple[str, str]]] | Rejection:
        """Apply a REGISTER and return (200, headers listing the bindings) or a rejection."""
        info = request.parsed
        to_uri = info.to.uri
        assert to_uri is not None
        aor = f"{to_uri.user or ''}@{to_uri.host}".lower()
        header_expires = request.headers.get("Expires")
        default = DEFAULT_EXPIRES
        if header_expires is not None:
            if not header_expires.isdigit() or len(header_expires) > 10:
                return Rejection(400, "invalid Expires")
            default = int(header_expires)
        bindings = self.bindings.setdefault(aor, {})
        for uri, expiry in list(bindings.items()):
            if expiry <= now:
                del bindings[uri]
        if any(contact.uri_text == "*" for contact in info.contact):
            # §10.3 step 6: '*' must be alone and come with Expires: 0.
            if len(info.contact) != 1 or default != 0:
                return Rejection(400, "Contact '*' needs Expires: 0 and no other Contact")
            bindings.clear()
        for contact in info.contact:
            if contact.uri_text == "*":
                continue
            expires_text = contact.params.get("expires")
            expires = default
            if expires_text is not None:
                if not expires_text.isdigit() or len(expires_text) > 10:
                    return Rejection(400, "invalid Contact expires parameter")
                expires = int(expires_text)
            if expires == 0:
                bindings.pop(contact.uri_text, None)
                continue
            if expires < MIN_EXPIRES:
                return Rejection(423, headers=[("Min-Expires", str(MIN_EXPIRES))])
            if contact.uri_text not in bindings and len(bindings) >= MAX_BINDINGS_PER_AOR:
                return Rejection(403, f"more than {MAX_BINDINGS_PER_AOR} bindings")
            bindings[contact.uri_text] = now + min(expires, MAX_EXPIRES)
        if not bindings:
            self.bindings.pop(aor, None)
        headers = [
            ("Contact", f"<{uri}>;expires={max(0, int(expiry - now))}")
            for uri, expiry in bindings.items()
        ]
        return 200, headers
