"""Text normalisation for ``$expand`` filters: case- and accent-insensitive, Thai left intact."""

from __future__ import annotations

import unicodedata

# Spacing modifier letters (ʼ) and combining diacritics (á); Thai vowels and tone marks are kept.
_DROPPED = range(0x02B0, 0x0370)


def normalise(text: str) -> str:
    """Casefold, decompose, drop Latin accents and punctuation: "bahai" finds "Baháʼí", "ดช" finds "ด.ช."."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(
        ch for ch in decomposed if ord(ch) not in _DROPPED and not unicodedata.category(ch).startswith("P")
    )


def matches(terms: list[str], haystack: str) -> bool:
    """True when every normalised filter term occurs in ``haystack`` (already normalised)."""
    return all(term in haystack for term in terms)


def filter_terms(text: str) -> list[str]:
    return normalise(text).split()
