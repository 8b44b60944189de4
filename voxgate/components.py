"""Server settings mapped onto the plain configs of the ACD and the WebRTC edge."""

from __future__ import annotations

import logging
import secrets

from acd import model as acd_model
from acd.clock import SystemClock
from acd.service import Acd
from acd.store.base import AcdStore
from acd.store.memory import MemoryStore
from acd.store.redis import RedisStore
from media.audio import PcmAudio
from media.tts import Synthesizer
from signaling.sip.auth import AuthConfig
from signaling.sip.endpoint import SipConfig
from signaling.sip.ping import PingConfig
from signaling.sip.registration import RegistrationConfig
from signaling.sip.uri import parse_sip_uri
from signaling.webrtc.config import IceServer, WebRtcConfig
from voxgate.agentmirror import AgentAccount
from voxgate.callbacks import CallbackConfig
from voxgate.contact import ContactCenter
from voxgate.queueing import hold_audio, hold_tone
from voxgate.recordings import RecordingConfig
from voxgate.settings import (
    AcdSettings,
    PingSettings,
    RecordingSettings,
    Settings,
    SipSettings,
    WebhookSettings,
    WebRtcSettings,
)
from voxgate.webhooks import RetryPolicy, WebhookConfig

logger = logging.getLogger("voxgate")


def acd_config(settings: AcdSettings) -> acd_model.AcdSettings:
    """Map the `acd` settings section onto the ACD's settings dataclass."""
    queues = {
        name: acd_model.QueueSettings(
            name=name,
            strategy=acd_model.Strategy.parse(queue.strategy),
            weight=queue.weight,
            ring_timeout_s=queue.ring_timeout_s,
            callback_timeout_s=queue.callback_timeout_s,
            max_wait_s=queue.max_wait_s,
            max_length=queue.max_length,
            overflow_target=queue.overflow_target,
            wrap_up_s=queue.wrap_up_s,
            announce_first_s=queue.announce_first_s,
            announce_every_s=queue.announce_every_s,
            service_level_s=queue.service_level_s,
            default_handle_time_s=queue.default_handle_time_s,
        )
        for name, queue in settings.queues.items()
    }
    jump = acd_model.JumpSettings(
        credit_per_priority_s=settings.jump.credit_per_priority_s,
        max_jump_s=settings.jump.max_jump_s,
        max_passes=settings.jump.max_passes,
    )
    return acd_model.AcdSettings(
        queues=queues,
        jump=jump,
        cross_queue_rule=acd_model.CrossQueueRule.parse(settings.cross_queue_rule),
        away_after_missed=settings.away_after_missed,
        node_ttl_s=settings.node_ttl_s,
    )


async def open_store(settings: AcdSettings) -> AcdStore:
    """Open the ACD store named by `acd.store`; raises OSError when Redis is unreachable."""
    if settings.store == "memory":
        return MemoryStore()
    try:
        return await RedisStore.connect(settings.store, settings.key_prefix)
    except Exception as exc:
        raise OSError(f"cannot connect to the ACD store: {exc}") from exc


def acd_node_id(name: str) -> str:
    """Return a new ACD node id for the node named `name` (`node.id`).

    A restarted node must be a new ACD node, so that the reaper closes out the callers and
    agents of its previous run.
    """
    return f"{name}.{secrets.token_hex(3)}"


def node_name(acd_node_id: str) -> str:
    """Return the node name (`node.id`) inside an ACD node id made by `acd_node_id`."""
    return acd_node_id.rpartition(".")[0] or acd_node_id


async def build_contact_center(settings: Settings, synthesizer: Synthesizer) -> ContactCenter:
    """Create the ACD on its store and the contact center around it (not started)."""
    store = await open_store(settings.acd)
    acd = Acd(store, SystemClock(), acd_config(settings.acd), node_id=acd_node_id(settings.node.id))
    every_queue = tuple(settings.acd.queues)
    accounts = {
        user: AgentAccount(tuple(agent.queues) or every_queue, dict(agent.skills))
        for user, agent in settings.webrtc.agents.items()
    }
    hold_music: dict[str, PcmAudio] = {
        name: hold_audio(queue.hold_music)
        for name, queue in settings.acd.queues.items()
        if queue.hold_music is not None
    }
    return ContactCenter(
        acd,
        synthesizer,
        accounts=accounts,
        hold_music=hold_music,
        default_hold=hold_tone(),
        route_within_node=settings.routes_within_node,
        transfer_allow=settings.webrtc.transfer_allow,
    )


def callback_config(settings: Settings) -> CallbackConfig | None:
    """Map the `callbacks` section and the queues' callback keys; None when callbacks are off."""
    callbacks = settings.callbacks
    if callbacks.trunk_uri is None:
        return None
    credentials = None
    if callbacks.username is not None:
        credentials = (callbacks.username, callbacks.password)
    return CallbackConfig(
        trunk_uri=callbacks.trunk_uri,
        caller_id=callbacks.caller_id,
        credentials=credentials,
        ring_timeout_s=callbacks.ring_timeout_s,
        retries=callbacks.retries,
        retry_interval_s=callbacks.retry_interval_s,
        number_pattern=callbacks.number_pattern,
        keys={
            name: queue.callback_key
            for name, queue in settings.acd.queues.items()
            if queue.callback_key is not None
        },
    )


def webrtc_config(settings: WebRtcSettings, http_host: str, http_port: int) -> WebRtcConfig:
    """Map the `webrtc` settings section onto the signaling edge's config.

    Without `allowed_origins`, only the node's own page address is allowed
    (http://HOST:PORT, and http://localhost:PORT for a loopback host).
    Without `token_secret`, a random one is generated for this run.
    """
    origins = settings.allowed_origins
    if origins is None:
        shown = f"[{http_host}]" if ":" in http_host else http_host
        origins = [f"http://{shown}:{http_port}"]
        if http_host in ("127.0.0.1", "::1"):
            origins.append(f"http://localhost:{http_port}")
    if settings.token_secret is None:
        logger.warning(
            "webrtc.token_secret is not set: using a random one, so sessions end on "
            "restart and tokens of other nodes are not accepted"
        )
        secret = secrets.token_bytes(32)
    else:
        secret = settings.token_secret.encode("utf-8")
    return WebRtcConfig(
        allowed_origins=tuple(origins),
        token_secret=secret,
        token_ttl_s=settings.token_ttl_s,
        users={user: agent.password_hash for user, agent in settings.agents.items()},
        guest_callers=settings.guest_callers,
        reconnect_grace_s=settings.reconnect_grace_s,
        ring_timeout_s=settings.ring_timeout_s,
        wrap_up_s=settings.wrap_up_s,
        ice_servers=tuple(
            IceServer(server.urls, server.username, server.credential)
            for server in settings.ice_servers
        ),
        advertised_addresses=tuple(settings.advertised_addresses),
        allow_mdns=settings.allow_mdns,
    )


def sip_config(settings: SipSettings) -> SipConfig:
    """Map the `sip` settings section onto the SIP endpoint's config."""
    auth = AuthConfig(
        realm=settings.realm,
        users=dict(settings.users),
        algorithms=tuple(settings.digest_algorithms),
        trusted_networks=tuple(settings.trusted_networks),
        allow_rfc2069=settings.digest_allow_rfc2069,
    )
    registrations = [
        RegistrationConfig(
            name=name,
            registrar=account.registrar,
            user=account.user,
            password=account.password,
            port=account.port,
            transport=account.transport,
            domain=account.domain,
            expires=account.expires,
            retry_min=account.retry_min_s,
            retry_max=account.retry_max_s,
        )
        for name, account in settings.registrations.items()
    ]
    return SipConfig(
        host=settings.host,
        port=settings.port,
        user_agent=settings.user_agent,
        advertised_host=settings.advertised_host,
        force_rport=settings.force_rport,
        max_calls=settings.max_calls,
        tls_port=settings.tls_port,
        tls_certfile=str(settings.tls_certfile) if settings.tls_certfile else None,
        tls_keyfile=str(settings.tls_keyfile) if settings.tls_keyfile else None,
        auth=auth,
        registrations=registrations,
        dns_servers=tuple(settings.dns_servers),
        dns_port=settings.dns_port,
        udp_receive_buffer=settings.udp_receive_buffer,
        overload_queue_bytes=settings.overload_queue_bytes,
        pings=[ping_config(name, ping) for name, ping in settings.pings.items()],
    )


def ping_config(name: str, settings: PingSettings) -> PingConfig:
    """Map one `sip.pings` entry onto the endpoint's ping config (host and port from the URI)."""
    uri = parse_sip_uri(settings.target)
    return PingConfig(
        name=name,
        target=settings.target,
        host=uri.bare_host,
        port=uri.port,
        transport=uri.transport,
        interval=settings.interval_s,
        timeout=settings.timeout_s,
    )


def webhook_config(settings: WebhookSettings) -> WebhookConfig | None:
    """Map the `webhooks` settings section onto the sender's config; None when no URL is set."""
    if not settings.urls or settings.secret is None:
        return None
    return WebhookConfig(
        urls=tuple(settings.urls),
        secret=settings.secret,
        kinds=tuple(settings.kinds),
        timeout_s=settings.timeout_s,
        retry=RetryPolicy(max_attempts=settings.retries + 1),
    )


def recording_config(settings: RecordingSettings) -> RecordingConfig:
    """Map the `recording` settings section onto the call handlers' recording config."""
    return RecordingConfig(
        directory=settings.directory, enabled=settings.enabled, sample_rate=settings.sample_rate
    )
