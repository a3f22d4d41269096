"""Conformance resources by canonical URL (``url`` or ``url|version``): the store first, then what we ship.

The validator itself is synchronous; a write or ``$validate`` first gathers, with ``prefetch``, the
resources the validation will need (a QuestionnaireResponse's Questionnaire) and hands the validator
a plain lookup. ``find`` is the one look-up every caller uses (referrals and summaries too).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from fhir_server import fhirjson
from fhir_server.interactions.errors import FhirError

# Definitional types every caller may see (they hold no one's data): the validator reads them whatever
# the caller's scopes, because what a resource is checked against must not depend on who sends it.
DEFINITIONAL = frozenset(
    {"Questionnaire", "StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter", "ConceptMap"}
)
_MAX_VERSIONS = 50

Canonicals = dict[tuple[str, str], dict[str, Any]]


def split(canonical: str) -> tuple[str, str | None]:
    """(url, version or None); a ``#fragment`` is not part of the resource's identity here."""
    url, _, version = canonical.partition("|")
    return url, (version or None)


def _open_reader(reader: Any) -> Any:
    opener = getattr(reader, "definitions_reader", None)
    return opener() if callable(opener) else reader


def _newest(candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Without a version: an active one before a draft or retired one, then the last updated."""

    def rank(r: dict[str, Any]) -> tuple[int, str, str]:
        meta = r.get("meta") if isinstance(r.get("meta"), dict) else {}
        return (r.get("status") == "active", str(r.get("version") or ""), str(meta.get("lastUpdated") or ""))

    return max(candidates, key=rank) if candidates else None


async def find(reader: Any, resource_type: str, canonical: str) -> dict[str, Any] | None:
    """The ``resource_type`` resource named by ``canonical``: stored (through ``reader``, a store or a
    write transaction, so a bundle sees what it created), else shipped with the server; None if unknown.

    A relative ``Type/id`` (as some R4 examples write ``QuestionnaireResponse.questionnaire``) is read by id.
    """
    if resource_type not in DEFINITIONAL:
        raise ValueError(f"{resource_type} is not a definitional resource type")
    url, version = split(canonical)
    if not url:
        return None
    store = _open_reader(reader)
    if url.startswith(f"{resource_type}/") and url.count("/") == 1:
        stored = await store.read(resource_type, url.split("/", 1)[1])
        return orjson.loads(stored.body) if stored is not None and not stored.deleted else None
    found = await _search(store, resource_type, url, version)
    if found is not None:
        return found
    return shipped(resource_type, url, version)


async def _search(store: Any, resource_type: str, url: str, version: str | None) -> dict[str, Any] | None:
    from fhir_server.search.query import parse_search

    params = [("url", url)] + ([("version", version)] if version else [])
    try:
        query = parse_search(
            resource_type,
            params,
            base_url="",
            strict=True,
            default_count=_MAX_VERSIONS,
            max_count=_MAX_VERSIONS,
        )
    except FhirError:
        return None  # not a value the url parameter accepts: nothing stored can match it
    query.includes, query.revincludes, query.total, query.summary = (), (), "none", None
    page = await store.search(query)
    candidates = [orjson.loads(s.body) for s in page.matches if not s.deleted]
    candidates = [c for c in candidates if c.get("url") == url]
    if version is not None:
        candidates = [c for c in candidates if c.get("version") == version]
    return _newest(candidates)


def shipped(resource_type: str, url: str, version: str | None = None) -> dict[str, Any] | None:
    """A conformance resource we ship (our profiles, terminology, R4 core), by canonical URL."""
    from fhir_server.validation import profiles

    hit = profiles.profile(url)
    if hit is not None and hit.get("resourceType") == resource_type:
        return hit if version is None or hit.get("version") == version else None
    return None


def _resources(resource: Any) -> Iterator[dict[str, Any]]:
    """The resource, its contained resources and (recursively) its Bundle entries."""
    if not isinstance(resource, dict):
        return
    yield resource
    for c in fhirjson.listed(resource.get("contained")):
        if isinstance(c, dict):
            yield c
    if resource.get("resourceType") == "Bundle":
        for entry in fhirjson.listed(resource.get("entry")):
            if isinstance(entry, dict):
                yield from _resources(entry.get("resource"))
    elif resource.get("resourceType") == "Parameters":
        for p in fhirjson.listed(resource.get("parameter")):
            if isinstance(p, dict):
                yield from _resources(p.get("resource"))


def needed(resource: Any) -> set[tuple[str, str]]:
    """(type, canonical) of every conformance resource validating ``resource`` will look up."""
    out: set[tuple[str, str]] = set()
    for r in _resources(resource):
        if r.get("resourceType") == "QuestionnaireResponse":
            q = r.get("questionnaire")
            if isinstance(q, str) and q and not q.startswith("#"):
                out.add(("Questionnaire", q))
    return out


async def prefetch(resource: Any, reader: Any) -> Canonicals:
    """Everything ``needed`` by ``resource`` that ``reader`` (or the package) holds."""
    found: Canonicals = {}
    if reader is None:
        return found
    for resource_type, canonical in sorted(needed(resource)):
        hit = await find(reader, resource_type, canonical)
        if hit is not None:
            found[(resource_type, canonical)] = hit
    return found
