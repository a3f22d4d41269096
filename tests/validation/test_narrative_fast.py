"""The narrative fast path answers exactly what the full element walk answers.

``narrative.check`` decides plain narratives (allowed elements, attributes ``_attribute`` accepts, no
comments or second namespace) from the element names as written and the attributes lxml parsed, and
walks the parsed tree otherwise.
Both must give the same findings on every narrative of HL7's R4 examples and on crafted edge cases.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest
from lxml import etree

from fhir_server.validation import narrative
from tests.validation.conftest import ROOT

PACKAGE = ROOT / ".." / "shared" / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz"
NS = 'xmlns="http://www.w3.org/1999/xhtml"'


def _divs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "div" and isinstance(item, str):
                yield item
            else:
                yield from _divs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _divs(item)


def _example_divs() -> list[str]:
    found: dict[str, None] = {}
    with tarfile.open(PACKAGE) as tar:
        for member in tar.getmembers():
            if not member.name.endswith(".json") or not member.isfile():
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            for div in _divs(json.load(handle)):
                found.setdefault(div)
    return list(found)


def _full(div: str) -> list[str]:
    """The answer of the full walk alone (the path ``check`` takes when the fast path declines)."""
    root = etree.fromstring(div.encode("utf-8"), narrative._parser())
    return narrative._walk(root)


def test_fast_path_agrees_with_the_walk_on_every_hl7_example() -> None:
    divs = _example_divs()
    assert len(divs) > 1000
    fast = 0
    for div in divs:
        try:
            etree.fromstring(div.encode("utf-8"), narrative._parser())
        except etree.XMLSyntaxError:
            continue
        if narrative._plain(div, etree.fromstring(div.encode("utf-8"), narrative._parser())) is not None:
            fast += 1
        assert narrative.check(div) == _full(div), div
    # the fast path must be the common case, or it is not worth having
    assert fast > len(divs) * 3 // 4


@pytest.mark.parametrize(
    ("div", "plain"),
    [
        (f"<div {NS}>Somchai</div>", True),
        (f"<div {NS}><p>a &lt; b</p></div>", True),
        (f'<div {NS}><p class="x" id="y" title="t &gt; u">a</p><br/></div>', True),
        (
            f'<div {NS}><table border="1"><tr><td colspan="2" style="color: red">x</td></tr></table></div>',
            True,
        ),
        (f'<div {NS}><a href="https://example.org/">x</a>\n</div>', True),
        (f'<div {NS} xml:lang="th">x</div>', True),
        (f"<div {NS}>5 > 3</div>", True),
        (f'<div {NS} style="color: red">x <br /></div>', True),
        (f'<div {NS} onclick="x()">x <p >y</p></div>', None),
        (f'<div {NS}><p\tonclick="x()">y</p></div>', None),
        (f"<div {NS}><p>  </p>\n <br/> </div>", False),
        (f"<div {NS}>&#160;</div>", False),
        (f"<div {NS}>&#32;x</div>", True),
        (f"<div {NS}><img/></div>", True),
        # each of these must go to the full walk
        (f"<div {NS}><!-- only a comment --></div>", None),
        (f"<div {NS}>x<!-- a comment --></div>", None),
        (f"<div {NS}><![CDATA[ ]]></div>", None),
        (f'<div {NS}><p xmlns="urn:other">x</p></div>', None),
        (f'<div {NS} xmlns:h="urn:h"><h:p>x</h:p></div>', None),
        (f'<div {NS}><p onclick="x()">x</p></div>', None),
        (f'<div {NS}><a href="javascript:x()">x</a></div>', None),
        (f'<div {NS}><img src="data:text/html,x"/></div>', None),
        (f'<div {NS}><p style="width: expression(x)">x</p></div>', None),
        (f'<div {NS}><p colspan="2">x</p></div>', None),
        (f"<div {NS}><script>x</script></div>", None),
        (f"<div {NS}><P>x</P></div>", None),
        (f"<div {NS}><ins>x</ins></div>", None),
    ],
)
def test_fast_path_decides_only_what_it_can(div: str, plain: bool | None) -> None:
    root = etree.fromstring(div.encode("utf-8"), narrative._parser())
    assert narrative._plain(div, root) is plain
    assert narrative.check(div) == _full(div)
