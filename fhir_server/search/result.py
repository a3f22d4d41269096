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
