"""How `acd.route_within_node` and `cluster` settings decide cross-node bridging."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from voxgate.settings import Settings

REDIS = "redis://127.0.0.1:6379/0"
SECRET = "s" * 32


def settings(acd: dict[str, Any], cluster: dict[str, Any] | None = None) -> Settings:
    return Settings.model_validate({"acd": acd, "cluster": cluster or {}})


def test_memory_store_routes_within_node() -> None:
    loaded = settings({}, {"secret": SECRET})
    assert not loaded.cross_node_bridging
    assert loaded.routes_within_node


def test_redis_without_secret_routes_within_node() -> None:
    loaded = settings({"store": REDIS})
    assert not loaded.cross_node_bridging
    assert loaded.routes_within_node


def test_redis_with_secret_bridges_across_nodes() -> None:
    loaded = settings({"store": REDIS}, {"secret": SECRET})
    assert loaded.cross_node_bridging
    assert not loaded.routes_within_node


def test_explicit_route_within_node_wins() -> None:
    loaded = settings({"store": REDIS, "route_within_node": True}, {"secret": SECRET})
    assert loaded.routes_within_node


def test_route_across_nodes_needs_secret() -> None:
    with pytest.raises(ValidationError, match=r"cluster\.secret"):
        settings({"store": REDIS, "route_within_node": False})


def test_short_cluster_secret_is_rejected() -> None:
    with pytest.raises(ValidationError, match="secret"):
        settings({"store": REDIS}, {"secret": "short"})
