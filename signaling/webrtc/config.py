"""Plain configuration for the WebRTC edge; the server's settings map onto it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class IceServer:
    """One STUN or TURN server given to aiortc (`urls` such as "stun:host:3478")."""

    urls: str
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True, slots=True)
class WebRtcConfig:
    """Settings of the WebSocket signaling edge and of the aiortc peers.

    `allowed_origins` are exact Origin header values ("https://cc.example.com");
    a WebSocket upgrade from any other Origin, or without one, gets 403.
    `token_secret` signs session tokens with HMAC-SHA256 and must be at least
    32 bytes. `users` maps agent user names to password hashes made by
    `auth.hash_password`. `advertised_addresses` are the IP addresses that
    aiortc binds and offers as host candidates; empty means every interface
    address except loopback (the aioice default). When a user's WebSocket
    drops, their calls and agent state are kept for `reconnect_grace_s`.
    `max_calls` bounds the peer connections of this node (each costs a few
    percent of a core) and `max_calls_per_user` those of one signed-in user.
    """

    allowed_origins: Sequence[str]
    token_secret: bytes
    token_ttl_s: int = 900
    users: Mapping[str, str] = field(default_factory=dict)
    guest_callers: bool = True
    max_message_bytes: int = 16_384
    rate_per_s: float = 20.0
    rate_burst: int = 40
    max_rate_violations: int = 50
    login_timeout_s: float = 10.0
    reconnect_grace_s: float = 20.0
    max_calls: int = 200
    max_calls_per_user: int = 2
    ring_timeout_s: float = 30.0
    wrap_up_s: int = 30
    ice_servers: Sequence[IceServer] = ()
    advertised_addresses: Sequence[str] = ()
    allow_mdns: bool = False
    audio_rate: int = 16_000
    static_dir: str | None = None

    def __post_init__(self) -> None:
        if len(self.token_secret) < 32:
            raise ValueError("token_secret must be at least 32 bytes")
        if self.token_ttl_s <= 0:
            raise ValueError(f"token_ttl_s must be positive, got {self.token_ttl_s}")
        if self.max_message_bytes < 1024:
            raise ValueError(
                f"max_message_bytes must be at least 1024, got {self.max_message_bytes}"
            )
        if self.rate_per_s <= 0 or self.rate_burst < 1:
            raise ValueError("rate_per_s must be positive and rate_burst at least 1")
        if self.max_calls < 1 or self.max_calls_per_user < 1:
            raise ValueError("max_calls and max_calls_per_user must be at least 1")
        if self.audio_rate not in (8000, 16000):
            raise ValueError(f"audio_rate must be 8000 or 16000, got {self.audio_rate}")
