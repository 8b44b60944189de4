"""Refer-To URIs that carry an agent's transfer from the agent's node to the caller's node."""

from __future__ import annotations

import pytest

from signaling.webrtc.protocol import TransferKind
from voxgate.crossnode import parse_transfer_uri, transfer_uri


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        (TransferKind.QUEUE, "general"),
        (TransferKind.QUEUE, "sales eu"),
        (TransferKind.NUMBER, "+4930123456#"),
        (TransferKind.NUMBER, "sip:2000@10.0.0.5:5060;transport=tcp"),
    ],
)
def test_transfer_uri_round_trip(kind: TransferKind, target: str) -> None:
    assert parse_transfer_uri(transfer_uri(kind, target)) == (kind, target)


@pytest.mark.parametrize(
    "text",
    [
        "sip:2000@10.0.0.5",
        "sip:general@voxgate.invalid",
        "sip:general@voxgate.invalid;vg-transfer=agent",
        "sip:@voxgate.invalid;vg-transfer=queue",
        "not a uri",
    ],
)
def test_other_refer_target_is_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_transfer_uri(text)
