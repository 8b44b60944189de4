from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FLOWS = REPO / "config" / "flows"
DATA = REPO / "tests" / "data" / "ivr"


@pytest.fixture
def flows_dir() -> Path:
    return FLOWS


@pytest.fixture
def data_dir() -> Path:
    return DATA
