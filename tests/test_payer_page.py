"""The hosted page's HTML without a browser or a stack (api/hosted/markup.py,
api/hosted/templates.py): the templates escape every value that is not already markup, so a
payment's reference, a department's name or a return URL cannot write HTML into the page."""

from __future__ import annotations

import pytest

from api.hosted.markup import Markup, concat, escape, html, json_for_html


def test_a_value_is_escaped_unless_it_is_markup() -> None:
    page = html("<p title={title}>{text}</p>", title="\"'", text="<script>x</script>&")
    assert page == "<p title=&quot;&#x27;>&lt;script&gt;x&lt;/script&gt;&amp;</p>"
    assert isinstance(page, Markup)
    assert html("<div>{inner}</div>", inner=page) == f"<div>{page}</div>"


def test_values_that_are_not_text_are_written_as_text() -> None:
    assert html('<input maxlength="{n}">', n=23) == '<input maxlength="23">'
    assert escape(None) == "None"


def test_adding_or_joining_plain_text_to_markup_escapes_the_text() -> None:
    assert Markup("<b>") + "<i>" == "<b>&lt;i&gt;"
    assert "<i>" + Markup("<b>") == "&lt;i&gt;<b>"
    assert isinstance("<i>" + Markup("<b>"), Markup)
    assert Markup("<br>").join(["<a>", Markup("<b>")]) == "&lt;a&gt;<br><b>"
    assert concat("<a>", Markup("<b>"), 1) == "&lt;a&gt;<b>1"


def test_escaping_markup_again_leaves_it_as_it_is() -> None:
    once = escape("<&>")
    assert escape(once) == "&lt;&amp;&gt;"
    assert escape(escape(once)) is once


def test_json_for_a_script_element_cannot_close_it() -> None:
    text = json_for_html({"reference": "</script><script>alert(1)</script>", "ar": "درهم"})
    assert "<" not in text
    assert ">" not in text
    assert "درهم" in text
    assert isinstance(text, Markup)


@pytest.mark.parametrize("field", ["{x.__class__}", "{x[0]}", "{x!r}", "{x:>9}", "{0}", "{}"])
def test_a_template_has_plain_fields_only(field: str) -> None:
    """A field that reaches into a value, converts or formats it would work on (or around)
    its escaped text: a template with one is refused."""
    with pytest.raises(ValueError, match="plain"):
        html(field, x="<")  # type: ignore[arg-type]
