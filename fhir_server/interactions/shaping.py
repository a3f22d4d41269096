"""``_summary`` and ``_elements``: the subset of a resource a client asked for.

Works on the stored bytes at the top level (the granularity the spec asks servers to support), so
the elements that remain are served exactly as stored. A subsetted resource is tagged SUBSETTED.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from fhir_server import definitions, fhirjson
from fhir_server.interactions.errors import FhirError

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
SUMMARY_MODES = ("true", "false", "text", "data", "count")
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _top_elements(resource_type: str) -> tuple[tuple[str, bool, bool], ...]:
    """(name, isSummary, mandatory) of each top-level element; choice names keep their ``[x]``."""
    sd = definitions.structure_definition(resource_type)
    if sd is None:
        return ()
    prefix = resource_type + "."
    out = []
    for element in sd["elements"]:
        path = element["path"]
        if path.startswith(prefix) and "." not in path[len(prefix) :] and "sliceName" not in element:
            out.append((path[len(prefix) :], bool(element.get("isSummary")), element.get("min", 0) > 0))
    return tuple(out)


def _matches(key: str, name: str) -> bool:
    if name.endswith("[x]"):
        stem = name[:-3]
        return key.startswith(stem) and key[len(stem) : len(stem) + 1].isupper()
    return key == name


def _keys_for(data: bytes, names: set[str]) -> set[str]:
    keys = {k for k, _ in fhirjson.members(data)}
    keep = set(_ALWAYS)
    for key in keys:
        bare = key[1:] if key.startswith("_") else key  # primitive extensions travel with their value
        if any(_matches(bare, n) for n in names):
            keep.add(key)
    return keep


def check_summary(value: str | None) -> str | None:
    if value is not None and value not in SUMMARY_MODES:
        raise FhirError(
            400, f"_summary must be one of {', '.join(SUMMARY_MODES)}, not '{value}'", expression=["_summary"]
        )
    return value


def shape(data: bytes, resource_type: str, summary: str | None, elements: list[str] | None) -> bytes:
    """The bytes to return for ``data`` under ``_summary``/``_elements`` (unchanged when neither applies)."""
    if summary in (None, "false") and not elements:
        return data
    tops = _top_elements(resource_type)
    if summary == "true":
        names = {n for n, is_summary, _ in tops if is_summary}
    elif summary == "text":
        names = {"text"} | {n for n, _, mandatory in tops if mandatory}
    elif summary == "data":
        names = {n for n, _, _ in tops} - {"text"}
    else:
        names = {e.strip() for e in elements or [] if e.strip()} | {
            n for n, _, mandatory in tops if mandatory
        }
    subset = fhirjson.select(data, _keys_for(data, names))
    return _tag_subsetted(subset)


def _tag_subsetted(data: bytes) -> bytes:
    meta: dict[str, Any] = {}
    for key, value in fhirjson.members(data):
        if key == "meta":
            meta = orjson.loads(value)
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    return fhirjson.replace_member(data, "meta", meta)


def elements_param(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v for v in value.split(",") if v.strip()]


@cache
def _summary_paths(resource_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """(paths marked isSummary, paths that have child elements) of a resource type's snapshot."""
    sd = definitions.structure_definition(resource_type)
    if sd is None:
        return frozenset(), frozenset()
    paths = [e["path"] for e in sd["elements"] if "sliceName" not in e]
    summary = frozenset(e["path"] for e in sd["elements"] if e.get("isSummary") and "sliceName" not in e)
    parents = frozenset(p.rsplit(".", 1)[0] for p in paths if "." in p)
    return summary, parents


def deep_summary(resource: dict[str, Any], resource_type: str) -> dict[str, Any]:
    """``_summary=true`` applied inside backbone elements too (what /metadata needs: its ``rest`` is a
    summary element, but most of what is inside it is not)."""
    summary, parents = _summary_paths(resource_type)

    def element(path: str, key: str) -> str | None:
        direct = f"{path}.{key}"
        if direct in summary or direct in parents:
            return direct
        for candidate in summary:  # choice elements: value[x] holds valueString...
            if candidate.endswith("[x]") and candidate.rsplit(".", 1)[0] == path:
                stem = candidate.rsplit(".", 1)[1][:-3]
                if key.startswith(stem) and key[len(stem) : len(stem) + 1].isupper():
                    return candidate
        return None

    def walk(node: dict[str, Any], path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            bare = key[1:] if key.startswith("_") else key
            found = None if key == "resourceType" else element(path, bare)
            if key != "resourceType" and (found is None or found not in summary):
                continue
            if found in parents and isinstance(value, dict):
                value = walk(value, found)
            elif found in parents and isinstance(value, list):
                value = [walk(v, found) if isinstance(v, dict) else v for v in value]
            out[key] = value
        return out

    shaped = walk(resource, resource_type)
    meta = dict(shaped.get("meta") or {})
    meta["tag"] = [*(t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"), SUBSETTED]
    shaped["meta"] = meta
    return shaped
