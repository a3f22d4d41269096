"""The access restriction a search carries: which resources the caller may see at all.

Consent enforcement (``fhir_server.security``) decides *who* may see *what* once per request and
hands the result to the query as plain data; every backend compiles it into the same statement as
the search itself (main matches, totals, ``_include``/``_revinclude`` targets, chain and ``_has``
inner resources), so pages stay full and totals stay true.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Grant:
    """Resources of ``resource_type`` linked to one of ``patients`` are visible.

    ``keys`` are the reference parameters that link the type to its Patient (empty for Patient
    itself, matched by id). ``patients`` None means every patient (emergency access).
    ``profile_key`` with ``profiles`` narrows the grant to resources claiming one of those profiles,
    with ``other_profiles`` to resources claiming none of them (a data class decided by profile).
    """

    resource_type: str
    keys: tuple[int, ...]
    patients: frozenset[str] | None
    profile_key: int = 0
    profiles: tuple[str, ...] = ()
    other_profiles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Access:
    """What one caller may see: a resource is visible when its type is allowed and it is open,
    carries the caller's ownership tag, or is covered by a grant."""

    types: frozenset[str] | None  # resource types visible at all (None: every type)
    open_types: frozenset[str] = frozenset()  # visible without ownership or consent
    owner_system: str = ""  # meta.tag system and code marking the caller's own resources
    owner_code: str = ""
    owner_keys: dict[str, int] = field(default_factory=dict)  # per type: key of its _tag parameter
    grants: tuple[Grant, ...] = ()

    def grants_for(self, resource_type: str) -> list[Grant]:
        return [g for g in self.grants if g.resource_type == resource_type]
