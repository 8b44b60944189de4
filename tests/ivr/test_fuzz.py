"""Random input never escapes the loader, template and condition code as an unexpected error."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.loader import FlowError, parse_flow
from ivr.templates import Template, TemplateError

YAML_ALPHABET = string.ascii_letters + string.digits + " :-_{}[]'\"#|>&*!%@\n\t,.?"

yaml_like = st.text(alphabet=YAML_ALPHABET, max_size=300)


@settings(max_examples=300, deadline=None)
@given(yaml_like)
def test_loader_random_text(text: str) -> None:
    try:
        parse_flow(text, "fuzz.yaml")
    except FlowError as exc:
        assert exc.diagnostics
        for diagnostic in exc.diagnostics:
            assert diagnostic.line >= 1
            assert diagnostic.column >= 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["flow", "steps", "start", "intents", "x"]), json_values))
def test_loader_random_structures(data: dict[str, object]) -> None:
    import json

    try:
        parse_flow(json.dumps(data), "fuzz.yaml")
    except FlowError as exc:
        assert exc.diagnostics


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=string.printable, max_size=80), json_values)
def test_template_random_source(source: str, value: object) -> None:
    try:
        text = Template(source).render({"name": value, "n": {"x": value}})
    except TemplateError:
        return
    assert isinstance(text, str)
