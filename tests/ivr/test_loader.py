from __future__ import annotations

from pathlib import Path

import pytest

from ivr.loader import FlowError, load_flow, parse_flow


def _errors(text: str) -> list[str]:
    with pytest.raises(FlowError) as caught:
        parse_flow(text, "f.yaml")
    return [str(d) for d in caught.value.diagnostics]


def test_bad_value_has_line_column_key() -> None:
    text = "flow: t\nsteps:\n  ask:\n    type: gather\n    dtmf:\n      max_digits: 0\n"
    errors = _errors(text)
    assert len(errors) == 1
    assert errors[0].startswith("f.yaml:6:7: steps.ask.dtmf.max_digits: 0: ")
    assert "greater than or equal to 1" in errors[0]


def test_unknown_key_is_named() -> None:
    errors = _errors("flow: t\nsteps:\n  a:\n    type: say\n    txet: hi\n")
    assert any(e.startswith("f.yaml:5:5: steps.a.txet: 'hi': unknown key 'txet'") for e in errors)


def test_unknown_step_type_lists_kinds() -> None:
    errors = _errors("flow: t\nsteps:\n  a:\n    type: sing\n")
    assert len(errors) == 1
    assert errors[0].startswith("f.yaml:4:5: steps.a.type: 'sing': ")
    assert "hint: type must be one of say, gather" in errors[0]


def test_missing_key_points_at_parent() -> None:
    errors = _errors("flow: t\nsteps:\n  q:\n    type: queue\n")
    assert errors == ["f.yaml:3:3: steps.q: (missing): missing key 'queue' (hint: add the key)"]


def test_duplicate_key_rejected() -> None:
    errors = _errors("flow: t\nflow: u\nsteps: {}\n")
    assert errors == ["f.yaml:2:1: duplicate key 'flow'"]


def test_yaml_syntax_error_has_position() -> None:
    errors = _errors("flow: t\nsteps: [\n")
    assert errors[0].startswith("f.yaml:3:1: invalid YAML")


def test_yes_no_stay_strings() -> None:
    flow, _ = parse_flow(
        "flow: t\nsteps:\n  a:\n    type: gather\n    speech: {phrases: [yes, no, on]}\n"
        "    on: {yes: b, no_input: b, no_match: b}\n  b: {type: hangup}\n",
        "f.yaml",
    )
    step = flow.steps["a"]
    assert step.type == "gather"
    assert step.speech is not None
    assert step.speech.phrases == ["yes", "no", "on"]
    assert step.on["yes"] == "b"


def test_numeric_keys_and_values_become_text() -> None:
    flow, _ = parse_flow(
        "flow: t\nsteps:\n  a:\n    type: menu\n    prompt: p\n    options:\n"
        "      - {key: 1, goto: b}\n    on: {no_input: b, no_match: b}\n  b: {type: hangup}\n",
        "f.yaml",
    )
    step = flow.steps["a"]
    assert step.type == "menu"
    assert step.options[0].key == "1"


def test_load_flow_runs_static_checks(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("flow: x\nsteps:\n  a:\n    type: say\n    text: hi\n    next: nowhere\n")
    with pytest.raises(FlowError) as caught:
        load_flow(path)
    assert str(caught.value.diagnostics[0]).startswith(f"{path}:6:5: steps.a.next: 'nowhere': ")


def test_custom_tags_rejected() -> None:
    errors = _errors("flow: t\nsteps:\n  a: !!python/object:os.system {type: say}\n")
    assert errors == ["f.yaml:3:6: unsupported YAML tag tag:yaml.org,2002:python/object:os.system"]
    scalar = _errors("flow: !0 x\nsteps: {}\n")
    assert scalar[0].startswith("f.yaml:1:7: invalid scalar: could not determine")


def test_load_flow_sets_base_dir(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("flow: x\nsteps:\n  a: {type: hangup}\n")
    assert load_flow(path).base_dir == tmp_path


QUEUE_FLOW = (
    "flow: t\nsteps:\n  sales:\n    type: queue\n    queue: sales\n"
    "    anouncement: Please hold for sales.\n    priority: high\n"
)


def test_queue_step_unknown_key_position() -> None:
    errors = _errors(QUEUE_FLOW)
    assert any(
        e.startswith("f.yaml:6:5: steps.sales.anouncement: 'Please hold for sales.': unknown key")
        for e in errors
    ), errors


def test_queue_step_bad_value_position() -> None:
    errors = _errors(QUEUE_FLOW)
    assert any(
        e.startswith("f.yaml:7:5: steps.sales.priority: 'high': Input should be a valid integer")
        for e in errors
    ), errors


def test_menu_step_error_location_unchanged() -> None:
    errors = _errors("flow: t\nsteps:\n  m:\n    type: menu\n    prompt: hi\n    timeout: x\n")
    assert any(e.startswith("f.yaml:6:") and "steps.m.timeout" in e for e in errors), errors


def test_misspelled_key_gets_did_you_mean() -> None:
    errors = _errors(
        "flow: t\nsteps:\n  a:\n    type: say\n    txt: hi\n"
        "  q:\n    type: queue\n    queue: sales\n    prority: 3\n"
    )
    assert "f.yaml:5:5: steps.a.txt: 'hi': unknown key 'txt' (hint: did you mean 'text'?)" in errors
    assert (
        "f.yaml:9:5: steps.q.prority: 3: unknown key 'prority' (hint: did you mean 'priority'?)"
        in errors
    )


def test_nested_key_did_you_mean() -> None:
    errors = _errors("flow: t\nlangauge: en\nsteps:\n  b: {type: gather, dtmf: {max_digit: 3}}\n")
    assert any(e.endswith("(hint: did you mean 'language'?)") for e in errors), errors
    assert any(e.endswith("(hint: did you mean 'max_digits'?)") for e in errors), errors


def test_unknown_key_far_from_any_keeps_plain_hint() -> None:
    errors = _errors("flow: t\nsteps:\n  a:\n    type: say\n    text: hi\n    zzzz: 1\n")
    assert any(e.endswith("(hint: remove the key or check its spelling)") for e in errors), errors
