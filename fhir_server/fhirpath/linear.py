"""Regular expressions from resources on RE2 (linear time), for our engine and for fhirpathpy.

``matches()`` and ``replaceMatches()`` take their pattern from an expression, and expressions come
from resources (SearchParameters, profiles' invariants, FHIRPath Patch). On a backtracking engine a
pattern like ``^(a+)+$`` takes seconds per write and doubles with each character; RE2 (Google's
linear-time engine, through its maintained ``google-re2`` binding) answers in time proportional to the
text, and refuses the few constructs that need backtracking (backreferences, lookaround).

Our FHIRPath engine (``fhir_server.fhirpath``) runs every pattern through ``regex`` here (its
``regex.py`` is the one caller). Importing this module also installs the two functions in fhirpathpy's
own function table, for code that still evaluates with fhirpathpy. Patterns from any other resource (a
ValueSet's ``regex`` filter) go through ``regex`` too.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import re2
from fhirpathpy.engine import invocations as _invocations
from fhirpathpy.engine import util as _util

MAX_PATTERN_LENGTH = 2_000  # longer patterns from a resource are refused


class PatternError(ValueError):
    """A pattern RE2 cannot run (bad syntax, backreferences, lookaround, or too long)."""


@lru_cache(maxsize=512)
def regex(pattern: str, *, dot_matches_newline: bool = False) -> Any:
    """``pattern`` compiled by RE2; ``PatternError`` when it cannot be run in linear time."""
    if not isinstance(pattern, str):
        raise PatternError("a regular expression must be a string")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"the regular expression is longer than {MAX_PATTERN_LENGTH} characters")
    options = re2.Options()
    options.log_errors = False
    options.dot_nl = dot_matches_newline
    options.max_mem = 8 << 20
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        message = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(
            f"regular expression {pattern!r} is not supported ({message}); patterns run on RE2,"
            " which has no backreferences or lookaround"
        ) from None


def _string(collection: list[Any]) -> str:
    if len(collection) == 1:
        value = _util.get_data(collection[0])
        if isinstance(value, str):
            return value
    raise TypeError(f"expected a single string, got {collection!r}")


def _matches(ctx: Any, collection: list[Any], pattern: Any) -> Any:
    if not pattern or not collection:
        return []
    return regex(pattern, dot_matches_newline=True).search(_string(collection)) is not None


_GROUP = re.compile(r"\$(\d+)")


def _replace_matches(ctx: Any, collection: list[Any], pattern: Any, substitution: Any) -> Any:
    if isinstance(pattern, list) or isinstance(substitution, list):
        return []
    text = _string(collection)
    return regex(pattern).sub(_GROUP.sub(r"\\\1", substitution), text)


def _install() -> None:
    table: dict[str, Any] = _invocations.invocation_registry
    table["matches"] = {**table["matches"], "fn": _matches}
    table["replaceMatches"] = {**table["replaceMatches"], "fn": _replace_matches}


_install()

_LITERAL_ARGUMENT = re.compile(r"\b(?:matches|replaceMatches)\s*\(\s*'((?:[^'\\]|\\.)*)'")
_ESCAPES = {"'": "'", '"': '"', "`": "`", "r": "\r", "n": "\n", "t": "\t", "f": "\f", "\\": "\\", "/": "/"}


def _unescape(literal: str) -> str:
    out, i = [], 0
    while i < len(literal):
        ch = literal[i]
        if ch == "\\" and i + 1 < len(literal):
            nxt = literal[i + 1]
            if nxt == "u" and i + 5 < len(literal):
                out.append(chr(int(literal[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def check_patterns(expression: str) -> None:
    """Refuse an expression whose literal ``matches``/``replaceMatches`` patterns RE2 cannot run
    (``PatternError``), so a bad pattern is reported when it is written, not when data arrives."""
    for literal in _LITERAL_ARGUMENT.findall(expression):
        try:
            pattern = _unescape(literal)
        except ValueError:
            raise PatternError(f"bad escape in the FHIRPath string '{literal}'") from None
        regex(pattern)
