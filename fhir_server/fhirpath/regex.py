"""The one place FHIRPath runs regular expressions (``matches``, ``matchesFull``, ``replaceMatches``).

Patterns come from expressions, and expressions come from resources (profiles' invariants,
SearchParameters, FHIRPath Patch), so they run on RE2 through ``linear.regex`` (linear time, bounded
memory, no backreferences); nothing else in the evaluator compiles a pattern.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.fhirpath import linear
from fhir_server.fhirpath.values import FhirPathError

_GROUP = re.compile(r"\$(\d+)")


def _compile(pattern: str, dot_matches_newline: bool) -> Any:
    """RE2 (``linear.regex``): time linear in the text; patterns it cannot run are FHIRPath errors."""
    try:
        return linear.regex(pattern, dot_matches_newline=dot_matches_newline)
    except linear.PatternError as exc:
        raise FhirPathError(str(exc)) from None


def search(pattern: str, text: str) -> bool:
    return _compile(pattern, True).search(text) is not None  # single-line mode: '.' matches newlines


def full_match(pattern: str, text: str) -> bool:
    return _compile(pattern, True).fullmatch(text) is not None


def substitute(pattern: str, substitution: str, text: str) -> str:
    return _compile(pattern, False).sub(_GROUP.sub(r"\\\1", substitution), text)
