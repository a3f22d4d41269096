"""Safe XHTML for narratives and the printable page: every text is escaped, tags come from a short list.

Nothing a client wrote reaches the output as markup: names, notes and codes are always text. The
tags allowed are the ones FHIR narrative permits and the page needs (no script, no event handlers,
no links out of the page).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

XHTML_NS = "http://www.w3.org/1999/xhtml"
_TAGS = frozenset(
    {
        "div",
        "p",
        "span",
        "b",
        "i",
        "br",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "ul",
        "li",
        "h1",
        "h2",
        "h3",
    }
)


class Markup(str):
    """Already-safe markup (made here), as opposed to text, which is always escaped."""


def text(value: object) -> Markup:
    return Markup(escape("" if value is None else str(value), quote=True))


# Keyword spelling of the allowed attributes (``class_``, ``xml__lang``) -> their XHTML names.
_ATTRIBUTE_NAMES = {
    "lang": "lang",
    "xml__lang": "xml:lang",
    "class_": "class",
    "colspan": "colspan",
    "id": "id",
}


def _inner(children: tuple[object, ...]) -> str:
    return "".join(
        c if isinstance(c, Markup) else escape(str(c), quote=True) for c in children if c is not None
    )


def el(tag: str, *children: object, **attributes: str | None) -> Markup:
    """``<tag attr="...">children</tag>``; plain strings among the children are escaped."""
    if tag not in _TAGS:
        raise ValueError(f"<{tag}> is not allowed in a narrative")
    attrs = ""
    for name, value in attributes.items():
        if name not in _ATTRIBUTE_NAMES:
            raise ValueError(f"attribute {name!r} is not allowed in a narrative")
        if value is not None:
            attrs += f' {_ATTRIBUTE_NAMES[name]}="{escape(value, quote=True)}"'
    if tag == "br":
        return Markup("<br/>")
    return Markup(f"<{tag}{attrs}>{_inner(children)}</{tag}>")


def join(*parts: object) -> Markup:
    return Markup(_inner(parts))


def english(value: str | None) -> Markup:
    """An English gloss after Thai text, marked as English for screen readers and the validator."""
    if not value:
        return Markup("")
    return join(" ", el("span", f"({value})", lang="en", xml__lang="en", class_="en"))


def narrative_div(*children: object) -> str:
    """The ``div`` of a FHIR Narrative (Thai by default)."""
    return f'<div xmlns="{XHTML_NS}" lang="th" xml:lang="th">{_inner(children)}</div>'


def table(headers: Sequence[Markup | str], rows: Sequence[Sequence[object]]) -> Markup:
    head = el("thead", el("tr", *(el("th", h) for h in headers)))
    body = el("tbody", *(el("tr", *(el("td", c) for c in row)) for row in rows))
    return el("table", head, body)
