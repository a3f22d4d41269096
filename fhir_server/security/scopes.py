"""SMART scopes for backend services: v2 ``system/Type.cruds`` and v1 ``system/Type.read|write|*``.

A scope set answers one question, ``allows(resource_type, letter)``, for the five SMART v2
permissions: c(reate) r(ead, vread, instance history) u(pdate, patch) d(elete) s(earch, type and
system history). v1 ``read`` means ``rs``, ``write`` means ``cud`` and ``*`` means ``cruds``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fhir_server import definitions
from fhir_server.interactions.errors import FhirError

LETTERS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^system/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)$")


@dataclass(frozen=True)
class Scope:
    resource_type: str  # a type or "*"
    letters: str  # subset of "cruds"

    def __str__(self) -> str:
        return f"system/{self.resource_type}.{self.letters}"


def parse_scope(text: str) -> Scope:
    """One scope; a ``ValueError`` names what is wrong (unknown type, bad permissions, not system/)."""
    match = _SCOPE.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a system/Type.permissions scope")
    rtype, perms = match.groups()
    if rtype != "*" and not definitions.is_resource_type(rtype):
        raise ValueError(f"'{text}': {rtype} is not a resource type")
    if perms in _V1:
        return Scope(rtype, _V1[perms])
    ordered = sorted(set(perms), key=lambda ch: LETTERS.find(ch))
    if any(ch not in LETTERS for ch in perms) or list(perms) != ordered:
        raise ValueError(f"'{text}': permissions must be letters of 'cruds' in that order, or read/write/*")
    return Scope(rtype, perms)


class ScopeSet:
    """A set of granted scopes, normalised so lookups are one dict probe."""

    def __init__(self, scopes: list[Scope]) -> None:
        self.scopes = scopes
        self._any = "".join(sorted({ch for s in scopes if s.resource_type == "*" for ch in s.letters}))
        self._by_type: dict[str, set[str]] = {}
        for s in scopes:
            if s.resource_type != "*":
                self._by_type.setdefault(s.resource_type, set()).update(s.letters)

    @classmethod
    def parse(cls, text: str) -> ScopeSet:
        return cls([parse_scope(part) for part in text.split()])

    def allows(self, resource_type: str, letter: str) -> bool:
        return letter in self._any or letter in self._by_type.get(resource_type, ())

    def readable_types(self) -> frozenset[str] | None:
        """Types the holder may read or search; None when every type is readable."""
        if "r" in self._any or "s" in self._any:
            return None
        return frozenset(t for t, letters in self._by_type.items() if letters & {"r", "s"})

    def within(self, other: ScopeSet) -> ScopeSet:
        """The part of these scopes that ``other`` also grants (what a token request may receive)."""
        kept = []
        for s in self.scopes:
            if s.resource_type == "*":
                letters = "".join(ch for ch in s.letters if ch in other._any)
                kept.append(Scope("*", letters))
                for rtype, granted in other._by_type.items():
                    extra = "".join(ch for ch in s.letters if ch in granted and ch not in letters)
                    if extra:
                        kept.append(Scope(rtype, extra))
            else:
                letters = "".join(ch for ch in s.letters if other.allows(s.resource_type, ch))
                kept.append(Scope(s.resource_type, letters))
        return ScopeSet([k for k in kept if k.letters])

    def __str__(self) -> str:
        return " ".join(str(s) for s in self.scopes)

    def __bool__(self) -> bool:
        return bool(self.scopes)


def require(scopes: ScopeSet, resource_type: str, letter: str, what: str) -> None:
    """Raise 403 unless ``scopes`` grant ``letter`` on ``resource_type``."""
    if not scopes.allows(resource_type, letter):
        raise FhirError(
            403,
            f"The access token's scopes do not allow {what} of {resource_type}"
            f" (needs system/{resource_type}.{letter} or wider)",
            code="forbidden",
        )
