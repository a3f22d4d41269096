"""Where terminology comes from: our ``data/`` folder, geothai, and the shipped FHIR R4 core.

Our resources live in ``fhir_server/terminology/data/`` (one JSON file per resource, reviewed like
code), inside the package so an installed wheel has them. ``TERMTEM_TERMINOLOGY_DIR`` points the server
at another folder instead (a site that maintains its own copy).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from fhir_server import definitions
from fhir_server.terminology import _admin_areas
from fhir_server.terminology._codesystem import CodeSystemIndex

_ENV_DIR = "TERMTEM_TERMINOLOGY_DIR"
_PACKAGED = Path(__file__).resolve().parent / "data"
_KINDS = ("CodeSystem", "ValueSet", "ConceptMap")


def terminology_dir() -> Path:
    """The folder holding our CodeSystem/ValueSet/ConceptMap JSON files."""
    candidates = [Path(p) for p in (os.environ.get(_ENV_DIR),) if p] + [_PACKAGED]
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("CodeSystem-*.json")):
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise RuntimeError(f"Termtem terminology files not found (looked in {tried}); set {_ENV_DIR}")


def _strip_version(url: str) -> tuple[str, str | None]:
    if "|" in url:
        base, version = url.split("|", 1)
        return base, version or None
    return url, None


class Registry:
    """Every CodeSystem, ValueSet and ConceptMap the terminology service knows, by canonical URL."""

    def __init__(self, folder: Path) -> None:
        self.shipped: list[dict[str, Any]] = []
        for path in sorted(folder.glob("*.json")):
            resource = orjson.loads(path.read_bytes())
            if resource.get("resourceType") in _KINDS:
                self.shipped.append(resource)
        self.shipped.append(_admin_areas.build())
        self._ours: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in _KINDS}
        self._by_id: dict[tuple[str, str], dict[str, Any]] = {}
        for resource in self.shipped:
            self._ours[resource["resourceType"]][resource["url"]] = resource
            self._by_id[(resource["resourceType"], resource["id"])] = resource
        self._indexes: dict[str, CodeSystemIndex | None] = {}

    def code_system(self, url: str) -> CodeSystemIndex | None:
        """The index of a CodeSystem we hold with its concepts (ours or FHIR core), else None."""
        base, _ = _strip_version(url)
        if base not in self._indexes:
            resource = self._ours["CodeSystem"].get(base) or definitions.code_system(base)
            usable = resource is not None and resource.get("content", "complete") in ("complete", "fragment")
            self._indexes[base] = CodeSystemIndex(resource) if usable and resource else None
        return self._indexes[base]

    def value_set(self, url: str) -> dict[str, Any] | None:
        base, _ = _strip_version(url)
        return self._ours["ValueSet"].get(base) or definitions.value_set(base)

    def concept_map(self, url: str) -> dict[str, Any] | None:
        base, _ = _strip_version(url)
        return self._ours["ConceptMap"].get(base)

    def concept_maps(self) -> list[dict[str, Any]]:
        return list(self._ours["ConceptMap"].values())

    def by_id(self, resource_type: str, id_: str) -> dict[str, Any] | None:
        return self._by_id.get((resource_type, id_))

    def is_ours(self, url: str) -> bool:
        base, _ = _strip_version(url)
        return any(base in table for table in self._ours.values())


@cache
def registry() -> Registry:
    """The process-wide registry, built on first use (about half a second, mostly geothai)."""
    return Registry(terminology_dir())
