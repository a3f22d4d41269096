"""How one resource version and its search index look as MongoDB documents.

The current version of a resource is one document in ``resources`` (``_id`` = ``Type/id``) that
carries its search-index entries embedded as short arrays, one per value kind; every version is one
document in ``history`` (``_id`` = the global commit sequence). The body is stored as binary so the
bytes served are exactly the bytes received.
"""

from __future__ import annotations

from typing import Any

from fhir_server.search.model import IndexRows
from fhir_server.storage.base import StoredResource

# Embedded index arrays, by value kind, and the field names of one entry (``None`` values are left
# out: a query for ``{"s": None}`` matches a missing field, and absent fields cost nothing).
ARRAYS: dict[str, str] = {
    "string": "xs", "token": "xt", "reference": "xr", "date": "xd",
    "number": "xn", "quantity": "xq", "uri": "xu",
}
COMPOSITE = "xc"  # groups of component entries that come from one composite value
_FIELDS: dict[str, tuple[str, ...]] = {
    "string": ("k", "n", "e"),
    "token": ("k", "s", "c"),
    "reference": ("k", "t", "i", "v", "u"),
    "date": ("k", "l", "h"),
    "number": ("k", "l", "h"),
    "quantity": ("k", "s", "c", "l", "h", "cc", "cl", "ch"),
    "uri": ("k", "u"),
}
INDEX_FIELDS: tuple[str, ...] = (*ARRAYS.values(), COMPOSITE)
# What a StoredResource is made of; reads project to these so index arrays never travel needlessly.
RESOURCE_FIELDS = {"t": 1, "i": 1, "v": 1, "lu": 1, "m": 1, "b": 1, "rid": 1}


def resource_key(resource_type: str, id: str) -> str:
    """The ``_id`` of a current-resource document (FHIR ids never contain ``/``)."""
    return f"{resource_type}/{id}"


def _entry(kind: str, row: tuple[Any, ...]) -> dict[str, Any]:
    # Every IndexRows tuple is (key, values..., grp); the group number is carried by the nesting.
    return {name: value for name, value in zip(_FIELDS[kind], row[:-1], strict=True) if value is not None}


def index_fields(rows: IndexRows | None) -> dict[str, Any]:
    """The embedded index of one resource: flat arrays for plain values, groups for composites."""
    out: dict[str, Any] = {name: [] for name in INDEX_FIELDS}
    if rows is None:
        return out
    groups: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for kind, array in ARRAYS.items():
        for row in getattr(rows, kind):
            grp = row[-1]
            if grp:
                groups.setdefault(grp, {}).setdefault(array, []).append(_entry(kind, row))
            else:
                out[array].append(_entry(kind, row))
    out[COMPOSITE] = [groups[g] for g in sorted(groups)]
    return out


def index_update(rows: IndexRows | None) -> dict[str, Any]:
    """An update document that replaces the embedded index (empty arrays are removed, not stored)."""
    fields = index_fields(rows)
    update: dict[str, Any] = {}
    present = {name: value for name, value in fields.items() if value}
    absent = {name: "" for name, value in fields.items() if not value}
    if present:
        update["$set"] = present
    if absent:
        update["$unset"] = absent
    return update


def resource_fields(resource: StoredResource) -> dict[str, Any]:
    """The non-index fields of a version (shared by the current and history documents)."""
    return {
        "t": resource.resource_type, "i": resource.id, "v": resource.version,
        "lu": resource.last_updated, "m": resource.method, "b": resource.body,
    }


def history_document(seq: int, resource: StoredResource) -> dict[str, Any]:
    return {"_id": seq, **resource_fields(resource)}


def stored(doc: dict[str, Any]) -> StoredResource:
    """A StoredResource from a ``resources`` or ``history`` document."""
    return StoredResource(doc["t"], doc["i"], doc["v"], doc["lu"], doc["m"], bytes(doc["b"]))
