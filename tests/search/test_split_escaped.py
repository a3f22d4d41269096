"""Search values are split and unescaped the same way whether or not they hold a backslash.

Values without one (nearly all) take ``str.split``; a long OR list of tokens (the identity layer's
look-ups send twenty system|value pairs) was split one character at a time in Python before.
"""

from __future__ import annotations

import random
import re

import pytest

from fhir_server.search.query import _unescape, parse_search, split_escaped


def _by_character(value: str, sep: str) -> list[str]:
    """The definition: split on ``sep`` unless a backslash escapes the next character."""
    parts, buf, i = [], [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            buf.append(value[i : i + 2])
            i += 2
            continue
        if value[i] == sep:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(value[i])
        i += 1
    parts.append("".join(buf))
    return parts


def test_split_and_unescape_match_the_definition_on_random_values() -> None:
    rng = random.Random(7)
    alphabet = "ab|,$\\ก1"
    for _ in range(5000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        for sep in (",", "|", "$"):
            assert split_escaped(value, sep) == _by_character(value, sep), (value, sep)
        assert _unescape(value) == re.sub(r"\\([\\,|$])", r"\1", value), value


@pytest.mark.parametrize(
    ("raw", "pairs"),
    [
        ("urn:a|1,urn:b|2", [("urn:a", "1"), ("urn:b", "2")]),
        ("urn:a|1\\,2", [("urn:a", "1,2")]),
        ("urn:a\\|b|3", [("urn:a|b", "3")]),
        ("|x,y", [("", "x"), (None, "y")]),
    ],
)
def test_token_lists_parse_as_before(raw: str, pairs: list[tuple[str | None, str]]) -> None:
    query = parse_search(
        "Patient", [("identifier", raw)], base_url="", strict=True, default_count=10, max_count=10
    )
    test = query.conditions[0]
    assert [(v.system, v.code) for v in test.values] == pairs
