"""Fixtures shared by the test packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from signaling.sip import parser


@pytest.fixture(scope="module", params=["c", "python"])
def sip_parser(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a module's tests once with the C fast path of SIP parsing and once without it.

    The "c" run fails when `signaling.sip._sipcore` is not built, so that a
    suite meant to cover both never passes on Python alone.
    """
    native = parser.native
    if request.param == "c" and native is None:
        pytest.fail("signaling.sip._sipcore is not built: run `make extensions`")
    if request.param == "python":
        parser.native = None
    try:
        yield request.param
    finally:
        parser.native = native
