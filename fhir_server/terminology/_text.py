"""Text normalisation for ``$expand`` filters: case- and accent-insensitive, Thai left intact."""

from __future__ import annotations

import unicodedata

_LATIN_MARKS = range(0x0300, 0x0370)  # Combining Diacritical Marks; Thai vowels and tone marks are kept


def normalise(text: str) -> str:
    """Casefold, decompose and drop Latin accents, so "Bahai" finds "Baháʼí" and Thai still matches."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if ord(ch) not in _LATIN_MARKS)


def matches(terms: list[str], haystack: str) -> bool:
    """True when every normalised filter term occurs in ``haystack`` (already normalised)."""
    return all(term in haystack for term in terms)


def filter_terms(text: str) -> list[str]:
    return normalise(text).split()
