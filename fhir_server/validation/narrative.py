"""Narrative XHTML (``Narrative.div``) checked as R4 requires (narrative.html#xhtml, rules txt-1/txt-2).

The div is parsed as XML by lxml with entity expansion, DTD loading and network access all off, so a
narrative cannot make the server read files or fetch URLs, nor blow up through nested entities; a
DOCTYPE or processing instruction is refused outright. The rules:

* the root is one ``div`` in the XHTML namespace, and the narrative has some non-whitespace content
  or an image (txt-2);
* only the basic HTML formatting elements of HTML 4.0 chapters 7-11 (except 9.4, ``ins``/``del``) and
  15, ``a`` and ``img``, with their attributes and internal ``style`` attributes (txt-1);
* no active content: no scripts, forms, frames, objects, event handlers (``on...``), and no
  ``javascript:``/``vbscript:``/``data:`` links (an ``img`` may use ``data:image/...``).

Each finding is a message; the validator reports them at the div's FHIRPath.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from lxml import etree

XHTML = "http://www.w3.org/1999/xhtml"
_XML_NS = "http://www.w3.org/XML/1998/namespace"

_CORE = frozenset({"id", "class", "style", "title", "lang", "dir", f"{{{_XML_NS}}}lang"})
_CELL = frozenset(
    {"abbr", "axis", "headers", "scope", "rowspan", "colspan", "align", "char", "charoff", "valign",
     "nowrap", "bgcolor", "width", "height"}
)  # fmt: skip
# element -> attributes allowed besides the core ones (HTML 4.0 chapters 7-11 and 15, a, img)
_ELEMENTS: dict[str, frozenset[str]] = {
    # 7 document structure (without html/head/body) and 15 alignment
    **{n: frozenset({"align"}) for n in ("div", "p", "h1", "h2", "h3", "h4", "h5", "h6")},
    "span": frozenset(),
    "address": frozenset(),
    # 8 language
    "bdo": frozenset(),
    # 9 text (9.4, ins and del, excluded)
    **{n: frozenset() for n in ("em", "strong", "dfn", "code", "samp", "kbd", "var", "cite", "abbr",
                                "acronym", "sub", "sup")},
    "blockquote": frozenset({"cite"}),
    "q": frozenset({"cite"}),
    "br": frozenset({"clear"}),
    "pre": frozenset({"width"}),
    # 10 lists
    "ul": frozenset({"type", "compact"}),
    "ol": frozenset({"type", "compact", "start"}),
    "li": frozenset({"type", "value"}),
    "dl": frozenset({"compact"}),
    "dt": frozenset(),
    "dd": frozenset(),
    "dir": frozenset({"compact"}),
    "menu": frozenset({"compact"}),
    # 11 tables
    "table": frozenset({"summary", "width", "border", "frame", "rules", "cellspacing", "cellpadding",
                        "align", "bgcolor"}),
    "caption": frozenset({"align"}),
    **{n: frozenset({"align", "char", "charoff", "valign"}) for n in ("thead", "tfoot", "tbody")},
    **{n: frozenset({"span", "width", "align", "char", "charoff", "valign"}) for n in ("colgroup", "col")},
    "tr": frozenset({"align", "char", "charoff", "valign", "bgcolor"}),
    "th": _CELL,
    "td": _CELL,
    # 15 fonts and rules
    **{n: frozenset() for n in ("tt", "i", "b", "big", "small", "strike", "s", "u", "center")},
    "font": frozenset({"size", "color", "face"}),
    "basefont": frozenset({"size", "color", "face"}),
    "hr": frozenset({"align", "noshade", "size", "width"}),
    # links and images
    "a": frozenset({"name", "href", "hreflang", "type", "rel", "rev", "charset", "shape", "coords"}),
    "img": frozenset({"src", "alt", "longdesc", "height", "width", "align", "border", "hspace", "vspace"}),
}  # fmt: skip
_ACTIVE = frozenset(
    {"script", "noscript", "form", "input", "button", "select", "textarea", "iframe", "frame", "frameset",
     "object", "embed", "applet", "param", "link", "meta", "base", "style", "head", "body", "html", "svg",
     "math"}
)  # fmt: skip
_URL_ATTRIBUTES = frozenset({"href", "src", "longdesc", "cite"})
_BAD_SCHEME = re.compile(r"^\s*(javascript|vbscript|data|livescript)\s*:", re.IGNORECASE)
_DATA_IMAGE = re.compile(r"^\s*data:\s*image/(png|gif|jpe?g|bmp|webp)[;,]", re.IGNORECASE)
_BAD_STYLE = re.compile(r"expression\s*\(|javascript\s*:|vbscript\s*:|@import|behavior\s*:", re.IGNORECASE)
_MAX_FINDINGS = 20
_NS = f"{{{XHTML}}}"
_DIV = f"{_NS}div"
# attributes allowed on every element whose value cannot carry code: no further checks needed
_SAFE_ATTRIBUTES = frozenset({"id", "class", "title", "lang", "dir", f"{{{_XML_NS}}}lang"})
_NO_CONTENT = "The narrative must have some non-whitespace content (txt-2)"


def _trie(words: frozenset[str] | dict[str, Any]) -> str:
    """A regular expression matching exactly ``words``, branching per letter (fast to try)."""
    tree: dict[str, Any] = {}
    for word in words:
        node = tree
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def pattern(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + pattern(node[ch]) for ch in sorted(node) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 and "" not in node else "(?:" + "|".join(branches) + ")"
        return body + ("?" if "" in node else "")

    return pattern(tree)


# the fast path (``_plain``): a "<" that neither ends an element nor starts an allowed one (comments,
# CDATA, processing instructions and prefixed or unknown names included); every attribute of the tree
_ODD_TAG = re.compile(r"<(?!/|" + _trie(_ELEMENTS) + r"[\s/>])")
_ALL_ATTRIBUTES = etree.XPath("//@*")
_ATTRIBUTED_TAG = re.compile(r"<[A-Za-z][^\s/>]*\s+[^\s/>]")  # a start tag with an attribute


@cache
def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
    )


def check(div: Any) -> list[str]:
    """What is wrong with a ``Narrative.div`` value (empty when it is valid R4 narrative)."""
    if not isinstance(div, str):
        return ["The narrative must be a string of XHTML"]
    if "<!" in div and re.search(r"<!DOCTYPE|<!ENTITY", div, re.IGNORECASE):
        return ["The narrative must not contain a DOCTYPE or entity declarations (XHTML in FHIR has none)"]
    try:
        root = etree.fromstring(div.encode("utf-8"), _parser())
    except etree.XMLSyntaxError as exc:
        return [f"The narrative is not well-formed XHTML: {exc.msg}"]
    if root.tag != _DIV:
        return [f"The narrative's root element must be a div in the XHTML namespace ({XHTML})"]
    plain = _plain(div, root)
    if plain is not None:
        return [] if plain else [_NO_CONTENT]
    return _walk(root)


def _walk(root: Any) -> list[str]:
    """Every element, attribute and text node of a parsed div against the rules (the full check)."""
    problems: list[str] = []
    has_content = bool(root.text and not root.text.isspace())
    prefix = len(_NS)
    for node in root.iter():
        tag = node.tag
        if type(tag) is not str:
            if isinstance(node, etree._ProcessingInstruction):
                problems.append("The narrative must not contain processing instructions")
            elif isinstance(node, etree._Entity):
                problems.append(f"The narrative must not use the entity &{node.name};")
            if not has_content and node.tail and not node.tail.isspace():
                has_content = True
            continue
        if not tag.startswith(_NS):
            problems.append(f"Element <{tag.rsplit('}', 1)[-1]}> is not in the XHTML namespace")
            continue
        name = tag[prefix:]
        if not has_content and (
            (node.text and not node.text.isspace())
            or (node is not root and node.tail and not node.tail.isspace())
            or name == "img"
        ):
            has_content = True
        allowed = _ELEMENTS.get(name)
        if allowed is None:
            if name in _ACTIVE:
                problems.append(
                    f"Element <{name}> is not allowed in a narrative (no active content, R4 txt-1)"
                )
            else:
                problems.append(f"Element <{name}> is not a basic HTML element that narrative allows (txt-1)")
            continue
        attributes = node.attrib
        if attributes:
            for attr, value in attributes.items():
                if attr in _SAFE_ATTRIBUTES:
                    continue
                problems.extend(_attribute(name, attr, value, allowed))
        if len(problems) >= _MAX_FINDINGS:
            break
    if not has_content:
        problems.append(_NO_CONTENT)
    return problems[:_MAX_FINDINGS]


def _plain(div: str, root: Any) -> bool | None:
    """The common case decided without visiting every node of the parsed div: None when unsure.

    In a div lxml parsed whose root is the XHTML div, with no comment, CDATA, processing instruction or
    other namespace declaration, every element is in the XHTML namespace and every ``<`` followed by a
    name starts an element. When those names are all allowed and every attribute passes ``_attribute``,
    the walk would find nothing: the answer is then whether the narrative has content (True) or not
    (False). Otherwise None, and ``_walk`` words the findings.
    """
    if div.count("xmlns") != 1 or _ODD_TAG.search(div) is not None:
        return None
    if _ATTRIBUTED_TAG.search(div, 1) is None:  # only the root can carry attributes
        for attr, value in root.attrib.items():
            if attr not in _SAFE_ATTRIBUTES and _attribute("div", attr, value, _ELEMENTS["div"]):
                return None
    else:
        for value in _ALL_ATTRIBUTES(root):
            attr = value.attrname
            if attr in _SAFE_ATTRIBUTES:
                continue
            element = value.getparent().tag[len(_NS) :]
            if _attribute(element, attr, str(value), _ELEMENTS[element]):
                return None
    if "<img" in div:
        return True
    text = etree.tostring(root, method="text", encoding=str)
    return bool(text) and not text.isspace()


def _attribute(element: str, attr: str, value: str, allowed: frozenset[str]) -> list[str]:
    local = attr.rsplit("}", 1)[-1].lower()
    if local.startswith("on"):
        return [f"Attribute {local} on <{element}> is an event handler; scripts are not allowed (txt-1)"]
    if attr not in _CORE and attr not in allowed:
        return [f"Attribute {local} is not allowed on <{element}> in a narrative (txt-1)"]
    image_data = element == "img" and local == "src" and _DATA_IMAGE.match(value)
    if local in _URL_ATTRIBUTES and _BAD_SCHEME.match(value) and not image_data:
        return [f"The {local} of <{element}> uses a scheme that can run code ({value.split(':', 1)[0]}:)"]
    if local == "style" and _BAD_STYLE.search(value):
        return [f"The style of <{element}> contains active content"]
    return []
