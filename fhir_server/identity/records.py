"""Reading and writing golden records inside a store transaction (the server's own bookkeeping)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_server.identity import golden as golden_content
from fhir_server.identity import review
from fhir_server.identity.model import GOLDEN, TAG_SYSTEM, GoldenState, is_golden
from fhir_server.storage.base import StoredResource

PATIENT = "Patient"


@dataclass
class Golden:
    """A golden record as read in a transaction: its stored version (None when new) and its state.

    Its review items (``state.candidates``) live beside it (``review``): ``with_review`` reads them,
    which every path that changes a golden record does before changing it (``save`` makes sure).
    """

    id: str
    stored: StoredResource | None
    state: GoldenState
    content: dict[str, Any]
    review_loaded: bool = False
    review_stored: dict[str, Any] | None = None  # the review entry as read (to write only changes)

    @staticmethod
    def of(stored: StoredResource) -> Golden:
        content = orjson.loads(stored.body) if stored.body else {}
        return Golden(stored.id, stored, GoldenState.read(stored.id, content), content)

    @staticmethod
    def new(id_: str) -> Golden:
        return Golden(id_, None, GoldenState(id_), {}, review_loaded=True)


async def with_review(tx: Any, golden: Golden) -> Golden:
    """``golden`` with its stored review items (items already in its state, from an old body or added
    before this call, are kept on top)."""
    if golden.review_loaded:
        return golden
    record = await tx.kv_get(review.NAMESPACE, golden.id)
    golden.review_stored = record
    golden.review_loaded = True
    current = {c.other for c in golden.state.candidates}
    stored = [c for c in review.from_record(record) if c.other not in current]
    golden.state.candidates = review.keep_best([*stored, *golden.state.candidates])
    return golden


Search = tuple[str, list[tuple[str, str]], int]  # resource type, parameters, how many


def _query(resource_type: str, params: list[tuple[str, str]], count: int) -> Any:
    from fhir_server.search.query import parse_search

    query = parse_search(
        resource_type, params, base_url="", strict=True, default_count=count, max_count=count
    )
    query.total = "none"
    return query


async def search(
    tx: Any, resource_type: str, params: list[tuple[str, str]], count: int = 50
) -> list[StoredResource]:
    """Current resources matching ``params`` (parsed strictly), read in ``tx`` or on a store."""
    page = await tx.search(_query(resource_type, params, count))
    return list(page.matches)


async def look_up(
    tx: Any, searches: Sequence[Search], reads: Sequence[tuple[str, str]] = ()
) -> tuple[list[StoredResource | None], list[list[StoredResource]]]:
    """Reads and searches (each as ``tx.read`` and ``search`` answer it) in one trip to the store
    where the backend offers it (``look_up`` on the SQLite transaction: one writer hop), else one by one.

    The method is looked up on the class, so a wrapper that forwards unknown attributes (a caller's
    secured view) is never bypassed: only the server's own transactions take the combined trip.
    """
    queries = [_query(rtype, params, count) for rtype, params, count in searches]
    if getattr(type(tx), "look_up", None) is not None:
        found, pages = await tx.look_up(list(reads), queries)
    else:
        found = [await tx.read(rtype, id_) for rtype, id_ in reads]
        pages = [await tx.search(query) for query in queries]
    return found, [list(page.matches) for page in pages]


def golden_tag() -> tuple[str, str]:
    return ("_tag", f"{TAG_SYSTEM}|{GOLDEN}")


def is_active_golden(stored: StoredResource) -> bool:
    """An active golden record (not retired, not a source), judged on its stored bytes first."""
    if not stored.body or TAG_SYSTEM.encode() not in stored.body:
        return False
    content = orjson.loads(stored.body)
    tags = (content.get("meta") or {}).get("tag") or []
    return any(
        isinstance(t, dict) and t.get("system") == TAG_SYSTEM and t.get("code") == GOLDEN for t in tags
    )


def golden_search_of(params: list[tuple[str, str]], count: int, *, per_match: int = 1) -> Search:
    """The Patient search behind ``golden_search`` (for ``look_up``; ``active_goldens`` filters it)."""
    return (PATIENT, params, count * per_match)


def active_goldens(found: list[StoredResource], count: int) -> list[StoredResource]:
    return [s for s in found if is_active_golden(s)][:count]


async def golden_search(
    tx: Any, params: list[tuple[str, str]], count: int, *, per_match: int = 1
) -> list[StoredResource]:
    """Active golden records among the Patients matching ``params``.

    The golden tag is tested here, not in the query: ANDed into the query, the index would have to
    gather every golden record of the store for each look-up (their number grows with the store),
    while a look-up by identifier or link matches only the few records of one child. ``per_match``:
    how many records (sources and golden) a matched child may bring, to read enough of them.
    """
    found = await search(tx, PATIENT, params, count=count * per_match)
    return active_goldens(found, count)


async def golden_of(tx: Any, source_id: str) -> Golden | None:
    """The active golden record a source record is linked to."""
    found = await golden_search(tx, [("link", f"Patient/{source_id}")], 5, per_match=4)
    for stored in found:
        golden = Golden.of(stored)
        if golden.state.link_of(source_id) is not None:
            return await with_review(tx, golden)
    return None


async def goldens_of(tx: Any, source_ids: list[str]) -> dict[str, Golden]:
    """source id -> its golden record, for several sources at once."""
    out: dict[str, Golden] = {}
    for start in range(0, len(source_ids), 50):
        chunk = source_ids[start : start + 50]
        refs = ",".join(f"Patient/{s}" for s in chunk)
        for stored in await golden_search(tx, [("link", refs)], 200, per_match=2):
            golden = Golden.of(stored)
            for sid in golden.state.sources():
                if sid in chunk:
                    out[sid] = golden
    return out


_WITH_TOKENS = 50


def goldens_with_search(tokens: list[str]) -> Search:
    """The look-up behind ``goldens_with`` (``tokens`` not empty)."""
    return golden_search_of([("identifier", ",".join(tokens))], _WITH_TOKENS, per_match=5)


async def goldens_with_found(tx: Any, found: list[StoredResource]) -> list[Golden]:
    """``goldens_with`` from the answer to its look-up."""
    return [await with_review(tx, Golden.of(s)) for s in active_goldens(found, _WITH_TOKENS)]


async def goldens_with(tx: Any, tokens: list[str]) -> list[Golden]:
    """Active golden records carrying any of these ``system|value`` identifiers."""
    if not tokens:
        return []
    rtype, params, count = goldens_with_search(tokens)
    return await goldens_with_found(tx, await search(tx, rtype, params, count=count))


async def read_golden(tx: Any, id_: str) -> Golden | None:
    stored = await tx.read(PATIENT, id_)
    if stored is None or stored.deleted:
        return None
    content = orjson.loads(stored.body)
    return await with_review(tx, Golden.of(stored)) if is_golden(content) else None


def guardians_search(source_id: str) -> Search:
    return ("RelatedPerson", [("patient", f"Patient/{source_id}")], 20)


def guardians_found(found: list[StoredResource]) -> list[tuple[str, dict[str, Any]]]:
    return [(s.id, orjson.loads(s.body)) for s in found]


async def guardians_of(tx: Any, source_id: str) -> list[tuple[str, dict[str, Any]]]:
    rtype, params, count = guardians_search(source_id)
    return guardians_found(await search(tx, rtype, params, count=count))


Known = dict[str, tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]]  # source -> content, guardians


async def sources_of(
    tx: Any, state: GoldenState, known: Known | None = None
) -> tuple[golden_content.Sources, golden_content.Guardians]:
    sources: golden_content.Sources = {}
    guardians: golden_content.Guardians = {}
    for sid in state.sources():
        if known and sid in known:
            sources[sid], guardians[sid] = known[sid]
            continue
        stored = await tx.read(PATIENT, sid)
        if stored is None or stored.deleted:
            continue
        sources[sid] = orjson.loads(stored.body)
        guardians[sid] = await guardians_of(tx, sid)
    return sources, guardians


async def _save_review(tx: Any, golden: Golden) -> None:
    record = review.to_record(golden.state)
    if record != golden.review_stored:
        await tx.kv_put(review.NAMESPACE, golden.id, record)
        golden.review_stored = record


def _comparable(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    return {**{k: v for k, v in resource.items() if k not in ("id", "meta")}, "meta": meta}


async def save(tx: Any, golden: Golden, known: Known | None = None) -> StoredResource | None:
    """Write the golden record as its state now says (a new version only when something changed).

    A golden record left with no source (every source deleted) is deleted: the server keeps no
    identity that no agency holds any more. Returns the version written, if any.
    """
    from fhir_server.interactions import writes

    state = golden.state
    current = golden.stored
    await with_review(tx, golden)
    if not state.links and not state.retired:
        state.candidates = []
        await _save_review(tx, golden)
        if current is None or current.deleted:
            return None
        tombstone = StoredResource(
            PATIENT, golden.id, current.version + 1, writes.now_instant(), "DELETE", b""
        )
        await tx.delete(tombstone)
        golden.stored = tombstone
        return tombstone
    await _save_review(tx, golden)
    sources, guardians = await sources_of(tx, state, known)
    content = {"resourceType": PATIENT, "id": golden.id, **golden_content.build(state, sources, guardians)}
    if current is not None and not current.deleted and _comparable(golden.content) == _comparable(content):
        return None
    version = current.version + 1 if current is not None else 1
    last_updated = writes.now_instant()
    data = writes.stamp(None, content, PATIENT, golden.id, version, last_updated)
    stored = StoredResource(PATIENT, golden.id, version, last_updated, "PUT" if current else "POST", data)
    await tx.put(stored, writes.index_rows(content))
    golden.stored, golden.content = stored, content
    return stored
