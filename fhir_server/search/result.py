"""What a backend returns for one page of a search."""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.storage.base import StoredResource


@dataclass
class SearchPage:
    matches: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    prev_cursor: str | None = None
    warnings: list[str] = field(default_factory=list)
    # With _total=estimate: True when ``total`` is an estimate, False when it is exact (None: not asked).
    total_estimated: bool | None = None
