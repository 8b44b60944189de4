"""Static checks: every broken flow in tests/data/ivr/broken gets exactly its expected messages.

Each file lists its expected diagnostics at the end, one `# expect:` comment per
line, with the file name in place of its path and BROKEN in place of the folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivr.cli import main, validate_file

BROKEN = Path(__file__).resolve().parents[1] / "data" / "ivr" / "broken"
CASES = sorted(BROKEN.glob("*.yaml"))


def _expected(path: Path) -> list[str]:
    prefix = "# expect: "
    return [
        line[len(prefix) :] for line in path.read_text().splitlines() if line.startswith(prefix)
    ]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_broken_flow_reports_expected(path: Path) -> None:
    expected = _expected(path)
    assert expected, f"{path.name} lists no '# expect:' line"
    found = [
        str(d).replace(str(path), path.name).replace(str(BROKEN), "BROKEN")
        for d in validate_file(path)
    ]
    assert found == expected


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_broken_flow_exits_one(path: Path) -> None:
    assert main(["validate", str(path)]) == 1


def test_broken_folder_covers_each_check() -> None:
    messages = "\n".join(line for path in CASES for line in _expected(path))
    for fragment in (
        "unknown step",
        "step is unreachable",
        "no 'no_input' handling",
        "no 'no_match' handling",
        "loop with no exit",
        "unknown variable",
        "has no examples",
        "WAV file not found",
    ):
        assert fragment in messages


def test_all_shipped_flows_validate(flows_dir: Path) -> None:
    files = sorted(flows_dir.glob("*.yaml"))
    assert files
    for path in files:
        assert [str(d) for d in validate_file(path)] == []


def test_loop_with_exit_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "menu_loop.yaml"
    path.write_text(
        "flow: menu_loop\nsteps:\n"
        "  main:\n    type: menu\n    prompt: Press 1 to hear it again, 2 to leave.\n"
        "    options:\n      - {key: 1, goto: again}\n      - {key: 2, goto: bye}\n"
        "    on: {no_input: bye, no_match: main}\n"
        "  again: {type: say, text: Again., next: main}\n"
        "  bye: {type: hangup}\n"
    )
    assert validate_file(path) == []


def test_subflow_name_checked_in_folder(flows_dir: Path, tmp_path: Path) -> None:
    shutil.copy(flows_dir / "contact_center.yaml", tmp_path / "contact_center.yaml")
    found = [str(d) for d in validate_file(tmp_path / "contact_center.yaml")]
    assert len(found) == 1
    assert "steps.order_status.flow: 'order_status': unknown flow" in found[0]
    shutil.copy(flows_dir / "order_status.yaml", tmp_path / "order_status.yaml")
    assert validate_file(tmp_path / "contact_center.yaml") == []


def test_impossible_outcome_key_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(
        "flow: keys\nsteps:\n  ask:\n    type: gather\n    dtmf: {max_digits: 1}\n"
        "    speech: {phrases: [yes, no]}\n"
        "    on: {'1': bye, '12': bye, 'yes': bye, maybe: bye, no_input: bye, no_match: bye}\n"
        "  bye: {type: hangup}\n"
    )
    found = [str(d) for d in validate_file(path)]
    assert len(found) == 2
    assert found[0].startswith(f"{path}:7:20: steps.ask.on.12: 'bye': no answer to this gather")
    assert found[0].endswith("[warning]")
    assert "steps.ask.on.maybe" in found[1]
    assert main(["validate", str(path)]) == 0
    assert main(["validate", "--strict", str(path)]) == 1
    capsys.readouterr()
