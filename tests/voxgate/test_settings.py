"""Settings loading: defaults, overrides, and errors that name file, line, key and value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ivr.model import QueueStep
from ivr.registry import FlowRegistry
from media.tts import EspeakSynthesizer
from voxgate.cli import default_config
from voxgate.components import build_contact_center, webhook_config
from voxgate.node import port_flag
from voxgate.queueing import warn_unknown_queues
from voxgate.settings import Settings, SettingsError, load_settings

REPOSITORY = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "voxgate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))
    assert settings.sip.port == 5060
    assert settings.http.port == 8080
    assert (settings.rtp.port_low, settings.rtp.port_high) == (20000, 20999)
    assert settings.ivr.flows_dir == tmp_path / "config" / "flows"


def test_default_config_file_is_valid() -> None:
    settings = load_settings(REPOSITORY / "config" / "voxgate.yaml")
    assert settings.ivr.flows_dir == REPOSITORY / "config" / "flows"
    assert settings.log.level == "INFO"


def test_overrides_win_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "sip:\n  port: 5070\n")
    overrides = {"sip.port": 5080, "rtp.port_low": 30000, "rtp.port_high": 30099}
    settings = load_settings(path, overrides)
    assert settings.sip.port == 5080
    assert settings.rtp.port_low == 30000


def test_bad_port_names_line_key_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "log:\n  level: INFO\nsip:\n  port: 70000\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert f"{path}:4:3" in message
    assert "sip.port" in message
    assert "70000" in message


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "sip:\n  prot: 5060\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    assert "sip.prot" in str(caught.value)
    assert f"{path}:2:3" in str(caught.value)


def test_bad_address_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "rtp:\n  host: example.com\n")
    with pytest.raises(SettingsError, match=r"rtp\.host: 'example\.com'"):
        load_settings(path)


def test_inverted_rtp_range_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "rtp:\n  port_low: 30000\n  port_high: 29000\n")
    with pytest.raises(SettingsError, match="port_low 30000 must be below port_high 29000"):
        load_settings(path)


def test_invalid_yaml_names_position(tmp_path: Path) -> None:
    path = write(tmp_path, "sip: [1, 2\n")
    with pytest.raises(SettingsError, match=r"voxgate.yaml:2:1: invalid YAML"):
        load_settings(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read file"):
        load_settings(tmp_path / "absent.yaml")


def test_serve_exits_2_on_invalid_settings(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "voxgate", "serve", "--config", str(path)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "http.port: -1" in result.stderr
    assert f"{path}:2:3" in result.stderr


def test_serve_rejects_bad_port_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voxgate", "serve", "--rtp-ports", "3000-2000"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid port range '3000-2000'" in result.stderr


def test_default_config_has_demo_queue_and_agent() -> None:
    settings = load_settings(REPOSITORY / "config" / "voxgate.yaml")
    assert "general" in settings.acd.queues
    assert "general" in settings.webrtc.agents["demo"].queues
    assert settings.acd.store == "memory"
    assert settings.webrtc.ice_servers == []


def test_agent_with_unknown_queue_is_rejected(tmp_path: Path) -> None:
    text = (
        "acd:\n  queues:\n    general: {}\n"
        "webrtc:\n  agents:\n    ann:\n      password_hash: x\n      queues: [sales]\n"
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, text))
    assert "sales" in str(caught.value)


def test_acd_store_must_be_memory_or_redis_url(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, "acd:\n  store: mysql://db\n"))
    assert "acd.store" in str(caught.value)
    assert "mysql://db" in str(caught.value)


def test_short_token_secret_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, "webrtc:\n  token_secret: short\n"))
    assert "webrtc.token_secret" in str(caught.value)


def test_hold_music_path_resolved_against_base(tmp_path: Path) -> None:
    text = "acd:\n  queues:\n    general:\n      hold_music: prompts/hold.wav\n"
    settings = load_settings(write(tmp_path, text))
    assert settings.acd.queues["general"].hold_music == tmp_path / "prompts" / "hold.wav"


def test_invalid_trusted_network_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, "sip:\n  trusted_networks: [not-a-network]\n"))
    assert "sip.trusted_networks" in str(caught.value)
    assert "not-a-network" in str(caught.value)


def test_sip_tls_port_needs_certificate(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, "sip:\n  tls_port: 5061\n"))
    assert "tls_certfile" in str(caught.value)


def test_registration_accepts_registrar_name(tmp_path: Path) -> None:
    text = (
        "sip:\n  registrations:\n    provider:\n      registrar: sip.example.com\n      user: u\n"
    )
    settings = load_settings(write(tmp_path, text))
    registration = settings.sip.registrations["provider"]
    assert registration.registrar == "sip.example.com"
    assert registration.port is None


def test_registration_rejects_invalid_registrar(tmp_path: Path) -> None:
    text = "sip:\n  registrations:\n    provider:\n      registrar: sip_ex!ample\n      user: u\n"
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, text))
    assert "sip.registrations.provider.registrar" in str(caught.value)
    assert "sip_ex!ample" in str(caught.value)
    assert "DNS host name" in str(caught.value)


def test_dns_servers_must_be_addresses(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, "sip:\n  dns_servers: [dns.example.com]\n"))
    assert "sip.dns_servers" in str(caught.value)


def test_cdr_path_defaults_under_base(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))
    assert settings.cdr.path == tmp_path / "var" / "cdr.sqlite"
    assert settings.api.token is None
    assert settings.webhooks.urls == []


def test_cdr_path_null_turns_cdrs_off(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "cdr:\n  path: null\n"))
    assert settings.cdr.path is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("api:\n  token: short\n", "api.token"),
        ("api:\n  token: has a space in it 0123\n", "api.token"),
        ("webhooks:\n  urls: [http://127.0.0.1:9/hook]\n", "webhooks"),
        ("webhooks:\n  urls: [ftp://example.com/x]\n  secret: 0123456789abcdef\n", "webhooks.urls"),
        ("webhooks:\n  kinds: ['call ended']\n", "webhooks.kinds"),
        ("webhooks:\n  retries: -1\n", "webhooks.retries"),
        ("webhooks:\n  timeout_s: 0\n", "webhooks.timeout_s"),
    ],
    ids=[
        "short token",
        "token with space",
        "urls without secret",
        "ftp url",
        "bad kind",
        "negative retries",
        "zero timeout",
    ],
)
def test_invalid_event_settings_rejected(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, text))
    assert key in str(caught.value)


def test_webhook_settings_map_to_config(tmp_path: Path) -> None:
    text = (
        "webhooks:\n  urls: [http://127.0.0.1:9/hook]\n  secret: 0123456789abcdef\n"
        "  kinds: [call.ended, acd.*]\n  timeout_s: 2\n  retries: 1\n"
    )
    config = webhook_config(load_settings(write(tmp_path, text)).webhooks)
    assert config is not None
    assert config.urls == ("http://127.0.0.1:9/hook",)
    assert config.kinds == ("call.ended", "acd.*")
    assert config.timeout_s == 2
    assert config.retry.max_attempts == 2
    assert webhook_config(load_settings(write(tmp_path, "")).webhooks) is None


def test_ping_target_must_be_sip_uri(tmp_path: Path) -> None:
    text = "sip:\n  pings:\n    carrier:\n      target: http://trunk.example.net\n"
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, text))
    assert "sip.pings.carrier.target" in str(caught.value)


def test_ping_timeout_below_interval(tmp_path: Path) -> None:
    text = (
        "sip:\n  pings:\n    carrier:\n      target: sip:trunk.example.net\n"
        "      interval_s: 5\n      timeout_s: 5\n"
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, text))
    assert "sip.pings.carrier" in str(caught.value)
    assert "must be below interval_s" in str(caught.value)


async def test_transfer_allow_reaches_contact_center(tmp_path: Path) -> None:
    text = "webrtc:\n  transfer_allow: ['+4420*', 'sip:*@pbx.example.net']\n"
    settings = load_settings(write(tmp_path, text))

    contact = await build_contact_center(settings, EspeakSynthesizer())
    try:
        assert contact.transfer_allow == ("+4420*", "sip:*@pbx.example.net")
        assert load_settings(write(tmp_path, "")).webrtc.transfer_allow == ["*"]
    finally:
        await contact.acd.store.close()


def test_default_config_defines_flow_queues() -> None:
    settings = load_settings(REPOSITORY / "config" / "voxgate.yaml")
    registry = FlowRegistry(settings.ivr.flows_dir)
    flows = [flow for flow in map(registry.get, registry.names) if flow is not None]
    assert flows

    assert warn_unknown_queues(flows, settings.acd.queues) == 0
    assert set(settings.webrtc.agents["demo"].queues) == set(settings.acd.queues)


def test_demo_agent_has_flow_skills() -> None:
    settings = load_settings(REPOSITORY / "config" / "voxgate.yaml")
    registry = FlowRegistry(settings.ivr.flows_dir)
    flows = [flow for flow in map(registry.get, registry.names) if flow is not None]
    wanted = {
        skill
        for flow in flows
        for step in flow.steps.values()
        if isinstance(step, QueueStep)
        for skill in [*step.skills, *(s for rule in step.rules for s in rule.skills)]
        if "{{" not in skill
    }
    assert {"ko", "zh", "billing"} <= wanted

    assert wanted <= set(settings.webrtc.agents["demo"].skills)


def test_unknown_key_gets_spelling_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "acd:\n  queues:\n    billing:\n      max_wiat_s: 60\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert f"{path}:4:7: acd.queues.billing.max_wiat_s: 60:" in message
    assert "unknown key 'max_wiat_s' (hint: did you mean 'max_wait_s'?)" in message


def test_serve_finds_checkout_settings_from_other_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voxgate", "serve", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "config/voxgate.yaml in the working directory" in " ".join(result.stdout.split())
    monkeypatch.chdir(tmp_path)
    assert default_config() == REPOSITORY / "config" / "voxgate.yaml"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "voxgate.yaml").write_text("{}\n")
    assert default_config() == Path("config/voxgate.yaml")


@pytest.mark.parametrize(
    ("error", "flag"),
    [
        ("error while attempting to bind on address ('127.0.0.1', 8080): in use", "--http-port"),
        ("could not bind to local_addr ('127.0.0.1', 5060)", "--sip-port"),
        ("could not bind to local_addr ('127.0.0.1', 20003)", "--rtp-ports"),
        ("[Errno 99] Cannot assign requested address", "--sip-port, --http-port or --rtp-ports"),
    ],
)
def test_port_error_names_its_flag(error: str, flag: str) -> None:
    settings = Settings.model_validate(
        {"http": {"port": 8080}, "sip": {"port": 5060}, "rtp": {"port_low": 20000}}
    )
    assert port_flag(settings, error) == flag
