"""Code translation through the project's ConceptMaps (FHIR JSON in ``fhir_server/terminology/data/``).

Mapping specs may translate a legacy code with ``"conceptMap": {"url": ..., "system": ...}``; the map is
read straight from its JSON file so the mappers need neither the server nor the terminology service.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson

# Equivalences under which a target may stand in for the source code.
_USABLE = {"equivalent", "equal", "wider", "subsumes", "relatedto", None}


@cache
def _maps(folder: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.rglob("*.json")):
        try:
            doc = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and doc.get("resourceType") == "ConceptMap" and doc.get("url"):
            found[doc["url"]] = doc
    return found


def _folder(folder: Path | None) -> Path:
    from fhir_server.terminology import terminology_dir

    return folder or terminology_dir()


def has_map(url: str, folder: Path | None = None) -> bool:
    return url in _maps(_folder(folder))


def translate(
    url: str, code: str, source_system: str | None = None, folder: Path | None = None
) -> dict[str, str] | None:
    """The first usable target ``{"system", "code", "display"}`` for ``code`` in ConceptMap ``url``.

    Raises KeyError when the map itself is missing (a broken mapping spec, not a bad record).
    """
    folder = _folder(folder)
    concept_map = _maps(folder).get(url)
    if concept_map is None:
        raise KeyError(f"ConceptMap {url} is not in {folder}")
    for group in concept_map.get("group", []):
        if source_system and group.get("source") not in (None, source_system):
            continue
        for element in group.get("element", []):
            if element.get("code") != code:
                continue
            for target in element.get("target", []):
                if target.get("equivalence") in _USABLE and target.get("code"):
                    result = {"system": group.get("target"), "code": target["code"]}
                    if target.get("display"):
                        result["display"] = target["display"]
                    return result
    return None
