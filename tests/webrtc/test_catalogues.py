"""The browser pages' UI string catalogues."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "voxgate" / "static"
CATALOGUES = sorted((STATIC / "i18n").glob("*.json"))


def _keys_used_by_pages() -> set[str]:
    used: set[str] = set()
    for page in [*STATIC.glob("*.html"), *STATIC.glob("*.js")]:
        text = page.read_text()
        used |= set(re.findall(r'data-i18n(?:-placeholder|-label)?="([a-z_.]+)"', text))
        used |= set(re.findall(r'\bt\("([a-z_.]+)"', text))
    return used


def test_english_and_chinese_catalogues_exist() -> None:
    assert {path.stem for path in CATALOGUES} >= {"en", "zh"}


@pytest.mark.parametrize("path", CATALOGUES, ids=lambda p: p.stem)
def test_catalogue_has_every_key_the_pages_use(path: Path) -> None:
    strings = json.loads(path.read_text())
    missing = _keys_used_by_pages() - set(strings)
    assert missing == set()


@pytest.mark.parametrize("path", CATALOGUES, ids=lambda p: p.stem)
def test_catalogue_keys_match_english(path: Path) -> None:
    english = json.loads((STATIC / "i18n" / "en.json").read_text())
    strings = json.loads(path.read_text())
    assert set(strings) == set(english)


@pytest.mark.parametrize("path", CATALOGUES, ids=lambda p: p.stem)
def test_placeholders_match_english(path: Path) -> None:
    english = json.loads((STATIC / "i18n" / "en.json").read_text())
    strings = json.loads(path.read_text())
    for key, text in english.items():
        assert set(re.findall(r"\{\w+\}", strings[key])) == set(re.findall(r"\{\w+\}", text)), key
