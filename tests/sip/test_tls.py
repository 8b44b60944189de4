"""SIP over TLS: a Python TLS client with a throwaway self-signed certificate."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signaling.sip.endpoint import SipConfig, SipEndpoint
from tests.sip.support import (
    OFFER_SDP,
    ScriptedHandler,
    options_probe,
    read_stream_message,
    sip_request,
    status_of,
)


def write_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_endpoint(tmp_path: Path) -> AsyncIterator[tuple[SipEndpoint, ssl.SSLContext]]:
    cert_path, key_path = write_certificate(tmp_path)
    config = SipConfig(port=0, tls_port=0, tls_certfile=str(cert_path), tls_keyfile=str(key_path))
    endpoint = SipEndpoint(config, ScriptedHandler(mode="reject", reject_status=486))
    await endpoint.start()
    client = ssl.create_default_context(cafile=str(cert_path))
    yield endpoint, client
    await endpoint.stop()


async def test_options_over_tls(tls_endpoint: tuple[SipEndpoint, ssl.SSLContext]) -> None:
    endpoint, client = tls_endpoint
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", endpoint.tls_port, ssl=client, server_hostname="localhost"
    )
    writer.write(options_probe(5061, "tls-probe", "TLS"))
    await writer.drain()

    reply = await asyncio.wait_for(read_stream_message(reader), 10.0)
    writer.close()

    assert endpoint.tls_port not in (0, endpoint.port)
    assert reply is not None
    assert status_of(reply) == 200
    assert b"Call-ID: tls-probe" in reply


async def test_invite_over_tls_reaches_app(
    tls_endpoint: tuple[SipEndpoint, ssl.SSLContext],
) -> None:
    endpoint, client = tls_endpoint
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", endpoint.tls_port, ssl=client, server_hostname="localhost"
    )
    invite = sip_request("INVITE", body=OFFER_SDP).replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS")
    writer.write(invite)
    await writer.drain()

    statuses: list[int] = []
    while not statuses or statuses[-1] < 200:
        message = await asyncio.wait_for(read_stream_message(reader), 10.0)
        assert message is not None
        statuses.append(status_of(message) or 0)
    writer.close()

    # The handler rejects at once, so the 486 replaces the 100 Trying (RFC 3261 §17.2.1).
    assert statuses == [486]


async def test_plain_tcp_to_tls_port_is_dropped(
    tls_endpoint: tuple[SipEndpoint, ssl.SSLContext],
) -> None:
    endpoint, _ = tls_endpoint
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.tls_port)
    writer.write(options_probe(5061, "plain", "TCP"))
    await writer.drain()

    data = await asyncio.wait_for(reader.read(), 15.0)
    writer.close()

    assert b"SIP/2.0 200" not in data
