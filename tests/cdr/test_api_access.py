"""Who may read the caller-data routes: bearer token, or loopback clients when none is set."""

from __future__ import annotations

from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from voxgate.eventstream import check_bearer, is_loopback

TOKEN = "secret-token-0123456789"


def request_from(address: str, authorization: str | None = None) -> web.Request:
    # The peer address comes from the OS socket, so the transport is the one mock here.
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (address, 40000) if name == "peername" else default
    )
    headers = {"Authorization": authorization} if authorization is not None else {}
    return make_mocked_request("GET", "/api/cdrs", headers=headers, transport=transport)


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("10.0.0.5", False),
     ("203.0.113.7", False), ("::ffff:192.0.2.1", False), ("not-an-address", False)],
)  # fmt: skip
def test_is_loopback(address: str, expected: bool) -> None:
    assert is_loopback(address) is expected


def test_no_token_lets_loopback_in() -> None:
    check_bearer(request_from("127.0.0.1"), None)


def test_no_token_rejects_remote_client() -> None:
    with pytest.raises(web.HTTPUnauthorized) as caught:
        check_bearer(request_from("192.0.2.10"), None)
    assert "loopback" in (caught.value.text or "")


def test_token_required_from_loopback_too() -> None:
    with pytest.raises(web.HTTPUnauthorized):
        check_bearer(request_from("127.0.0.1"), TOKEN)


def test_valid_token_lets_remote_client_in() -> None:
    check_bearer(request_from("192.0.2.10", f"Bearer {TOKEN}"), TOKEN)


def test_wrong_token_rejected() -> None:
    with pytest.raises(web.HTTPUnauthorized):
        check_bearer(request_from("192.0.2.10", "Bearer other"), TOKEN)
