"""Shared fixtures of the peer wrapper tests."""

from __future__ import annotations

import shutil

import pytest

from tests.support.capture import capture_available


def require_binary(name: str) -> None:
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")


@pytest.fixture
def needs_capture() -> None:
    if not capture_available():
        pytest.skip("capturing on lo needs root or CAP_NET_RAW")
