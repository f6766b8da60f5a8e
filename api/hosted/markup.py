"""HTML that escapes by default: the page's templates are built with ``html()`` only.

A ``Markup`` is text that is already HTML: a template's own text with its values escaped
into it. ``html(template, **values)`` fills a template's ``{name}`` fields, escaping every
value that is not a ``Markup``; joining and ``+`` do the same with their parts. A value from
a payment (a reference, a department's name, a return URL) therefore reaches the page
escaped unless someone wraps it in ``Markup`` on purpose: forgetting to escape it cannot
happen, and the one way to skip the escaping is visible in the code.

The escaping is ``html.escape(..., quote=True)``, so a value is safe in an element's text
and inside a double- or single-quoted attribute alike (not in a ``<script>``: the page puts
its JSON there through ``json_for_html``, which returns a ``Markup`` of its own).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from html import escape as _escape_text
from string import Formatter
from typing import LiteralString


class Markup(str):
    """Text that is HTML already, safe to send as it is."""

    __slots__ = ()

    def __add__(self, other: object) -> Markup:
        return Markup(str.__add__(self, escape(other)))

    def __radd__(self, other: object) -> Markup:
        return Markup(str.__add__(escape(other), self))

    def join(self, parts: Iterable[object]) -> Markup:
        """The parts, each escaped unless it is ``Markup``, with this markup between them."""
        return Markup(str.join(self, (escape(part) for part in parts)))

    def __repr__(self) -> str:
        return f"Markup({str.__repr__(self)})"


def escape(value: object) -> Markup:
    """``value`` as HTML: a ``Markup`` as it is, anything else as text (``&<>"'`` escaped)."""
    if isinstance(value, Markup):
        return value
    return Markup(_escape_text(str(value), quote=True))


def html(template: LiteralString, /, **values: object) -> Markup:
    """``template`` (the code's own text, never data) with its ``{name}`` fields filled in by
    ``values``, each escaped unless it is ``Markup``.

    Only plain ``{name}`` fields: an index, an attribute, a conversion or a format spec
    would work on the escaped text (or around it), so a template with one is refused."""
    _check(template)
    return Markup(template.format_map({name: escape(value) for name, value in values.items()}))


@lru_cache(maxsize=256)
def _check(template: str) -> None:
    for _, field, spec, conversion in Formatter().parse(template):
        if field is not None and (not field.isidentifier() or spec or conversion):
            raise ValueError(f"a template's fields are plain {{name}}s, not {{{field}}}")


def concat(*parts: object) -> Markup:
    """The parts one after the other, each escaped unless it is ``Markup``."""
    return Markup("").join(parts)


def json_for_html(value: object) -> Markup:
    """JSON that is safe inside a ``<script type="application/json">`` element: no ``<`` or
    ``>`` in it can close the element, and HTML escaping (which a script's text does not
    undo) is not applied."""
    text = json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
    return Markup(text)
