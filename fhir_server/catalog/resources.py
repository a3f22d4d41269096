"""The shipped definitions as stored-looking resources: version 1, HL7's ``lastUpdated``, by id."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson

from fhir_server import definitions
from fhir_server.storage.base import StoredResource

_SOURCES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "SearchParameter": definitions.search_parameter_resources,
    "ValueSet": definitions.value_sets,
    "CodeSystem": definitions.code_systems,
}
CATALOG_TYPES = frozenset(_SOURCES)
_DEFAULT_INSTANT = "2019-11-01T00:00:00.000Z"  # R4 4.0.1's publication, for a definition without a date


def _instant(value: Any) -> str:
    """A FHIR instant as the store keeps it: UTC, millisecond precision, ``Z``."""
    if not isinstance(value, str):
        return _DEFAULT_INSTANT
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return _DEFAULT_INSTANT
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@cache
def _table(resource_type: str) -> dict[str, StoredResource]:
    out: dict[str, StoredResource] = {}
    for definition in _SOURCES[resource_type]():
        last_updated = _instant((definition.get("meta") or {}).get("lastUpdated"))
        meta = {**(definition.get("meta") or {}), "versionId": "1", "lastUpdated": last_updated}
        body = orjson.dumps({"resourceType": resource_type, "id": definition["id"], "meta": meta, **{
            k: v for k, v in definition.items() if k not in ("resourceType", "id", "meta")
        }})
        out[definition["id"]] = StoredResource(resource_type, definition["id"], 1, last_updated, "PUT", body)
    return out


def stored(resource_type: str) -> list[StoredResource]:
    """Every shipped definition of ``resource_type`` as a stored version (empty for other types)."""
    return list(_table(resource_type).values()) if resource_type in CATALOG_TYPES else []


def by_id(resource_type: str, id_: str) -> StoredResource | None:
    """The shipped definition ``resource_type/id_``, or None."""
    if resource_type not in CATALOG_TYPES:
        return None
    return _table(resource_type).get(id_)


def is_reserved(resource_type: str, id_: str) -> bool:
    """Whether ``resource_type/id_`` is a shipped definition, which clients may not replace or delete."""
    return by_id(resource_type, id_) is not None
