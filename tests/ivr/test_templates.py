from __future__ import annotations

import pytest

from ivr.templates import Template, TemplateError, render


def test_substitutes_nested_values() -> None:
    variables = {"order": {"status": "shipped", "items": ["lamp"]}, "name": "Ada"}
    assert render("{{ name }}: {{ order.status }} {{ order.items.0 }}", variables) == (
        "Ada: shipped lamp"
    )


def test_filters_apply_in_order() -> None:
    assert render("{{ x | default('none') | upper }}", {}) == "NONE"
    assert render("{{ n | digits }}", {"n": "123"}) == "1 2 3"
    assert render("{{ card | mask }}", {"card": "4111111111111111"}) == "************1111"


def test_unset_variable_raises() -> None:
    with pytest.raises(TemplateError, match="'missing' is not set"):
        render("{{ missing }}", {})


@pytest.mark.parametrize(
    "source",
    [
        "{{ __class__ }}",
        "{{ name.__class__ }}",
        "{{ name._private }}",
        "{{ name.upper() }}",
        "{{ name['x'] }}",
        "{{ name | attr('x') }}",
        "{{ 1 + 1 }}",
    ],
)
def test_attribute_escapes_rejected(source: str) -> None:
    with pytest.raises(TemplateError):
        Template(source).render({"name": "Ada"})


def test_lookup_never_uses_attributes() -> None:
    class Secretive:
        secret = "leak"

    with pytest.raises(TemplateError):
        render("{{ obj.secret }}", {"obj": Secretive()})


def test_url_quote_encodes_values() -> None:
    text = render("http://h/o/{{ id }}", {"id": "../a b?x=1"}, url_quote=True)
    assert text == "http://h/o/..%2Fa%20b%3Fx%3D1"


def test_evaluate_keeps_type() -> None:
    assert Template("{{ n }}").evaluate({"n": 5}) == 5
    assert Template("n={{ n }}").evaluate({"n": 5}) == "n=5"


def test_unbalanced_braces_rejected() -> None:
    with pytest.raises(TemplateError, match="unbalanced"):
        Template("hello {{ name")


def test_url_base_expression_kept_but_checked() -> None:
    variables = {"base": "http://127.0.0.1:8085/api", "id": "a/b"}
    assert render("{{ base }}/o/{{ id }}", variables, url_quote=True) == (
        "http://127.0.0.1:8085/api/o/a%2Fb"
    )
    with pytest.raises(TemplateError, match="must start with http"):
        render("{{ base }}/o", {"base": "file:///etc/passwd"}, url_quote=True)
