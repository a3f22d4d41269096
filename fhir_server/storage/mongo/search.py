"""Run one page of a search: the compiled filter, keyset paging, sorting, totals and includes.

Plain ``find`` serves searches sorted by nothing, ``_id`` or ``_lastUpdated`` (fields of the document,
indexed with the type). Sorting by a search parameter needs the lowest (or, descending, highest)
value of that parameter's index entries, computed per document with ``$addFields`` in an aggregation;
resources without a value sort last either way, like SQLite. Pages are cut by keyset (sort values
plus ``rid``) with the same cursor format as SQLite, so pages stay consistent while others write.
"""

from __future__ import annotations

from typing import Any

from fhir_server.interactions.errors import FhirError
from fhir_server.search.access import Access
from fhir_server.search.query import (
    MAX_INCLUDE_DEPTH,
    Include,
    SearchQuery,
    SortKey,
    encode_cursor,
    page_cursors,
)
from fhir_server.search.result import SearchPage
from fhir_server.storage.base import ScanPage, StoredResource
from fhir_server.storage.mongo.documents import ARRAYS, RESOURCE_FIELDS, stored
from fhir_server.storage.mongo.filters import NOT_DELETED, Filter, Resolver, compile_query, visible_filter

# Semi-joins bind their inner results into the outer filter; past this many the filter would near
# MongoDB's 16 MB document limit, so the client is asked for narrower criteria instead.
MAX_SEMI_JOIN = 100_000

_SORT_VALUE = {
    "string": "$$e.n",
    "token": "$$e.c",
    "uri": "$$e.u",
    "reference": {"$concat": ["$$e.t", "/", "$$e.i"]},
}


def _sort_value(key: SortKey) -> Any:
    if key.table in _SORT_VALUE:
        return _SORT_VALUE[key.table]
    bound = "h" if key.descending else "l"
    if key.table == "quantity":
        return {"$ifNull": [f"$$e.c{bound}", f"$$e.{bound}"]}
    return f"$$e.{bound}"


def sort_stages(sort: tuple[SortKey, ...]) -> list[dict[str, Any]]:
    """``$addFields`` stages giving each document ``_kN`` (the sort value) and ``_mN`` (1 if missing)."""
    values: dict[str, Any] = {}
    keys: dict[str, Any] = {}
    missing: dict[str, Any] = {}
    for n, key in enumerate(sort):
        if key.table is None:
            continue
        array = ARRAYS[key.table]
        values[f"_a{n}"] = {
            "$map": {
                "input": {
                    "$filter": {
                        "input": {"$ifNull": [f"${array}", []]},
                        "as": "e",
                        "cond": {"$eq": ["$$e.k", key.key]},
                    }
                },
                "as": "e",
                "in": _sort_value(key),
            }
        }
        keys[f"_k{n}"] = {"$max" if key.descending else "$min": f"$_a{n}"}
        missing[f"_m{n}"] = {"$cond": [{"$eq": [{"$ifNull": [f"$_k{n}", None]}, None]}, 1, 0]}
    if not values:
        return []
    return [{"$addFields": values}, {"$addFields": keys}, {"$addFields": missing}]


def _columns(sort: tuple[SortKey, ...]) -> list[tuple[str, bool, int | None]]:
    """(field, descending, sort position) in order; rid last. Missing flags precede parameter keys."""
    out: list[tuple[str, bool, int | None]] = []
    for n, key in enumerate(sort):
        if key.table is None:
            out.append(("i" if key.name == "_id" else "lu", key.descending, n))
        else:
            out.append((f"_m{n}", False, None))
            out.append((f"_k{n}", key.descending, n))
    out.append(("rid", False, None))
    return out


def keyset_filter(sort: tuple[SortKey, ...], cursor: dict[str, Any], backwards: bool) -> Filter:
    """Documents strictly after (or, paging back, before) the cursor position in sort order."""
    values: dict[str, Any] = {}
    for n, key in enumerate(sort):
        value = cursor["k"][n]
        if key.table is None:
            values["i" if key.name == "_id" else "lu"] = value
        else:
            values[f"_m{n}"] = 1 if value is None else 0
            values[f"_k{n}"] = value
    values["rid"] = cursor["r"]
    branches = []
    equal: Filter = {}
    for field, descending, _ in _columns(sort):
        value = values[field]
        forward = descending == backwards  # moving towards larger values
        if value is not None:  # nothing sorts strictly beyond a missing value but the next column
            branches.append({**equal, field: {"$gt" if forward else "$lt": value}})
        equal = {**equal, field: value}
    return branches[0] if len(branches) == 1 else {"$or": branches}


def _resolver(collection: Any, session: Any) -> Resolver:
    async def chain(flt: Filter) -> list[str]:
        docs = await collection.find(flt, {"i": 1}, session=session).limit(MAX_SEMI_JOIN + 1).to_list()
        _check_size(len(docs))
        return sorted({d["i"] for d in docs})

    async def has(flt: Filter, key: int) -> list[str]:
        reference = ARRAYS["reference"]
        cursor = await collection.aggregate(
            [
                {"$match": flt},
                {"$unwind": f"${reference}"},
                {
                    "$match": {
                        f"{reference}.k": key,
                        f"{reference}.t": {"$exists": True},
                        f"{reference}.i": {"$exists": True},
                    }
                },
                {"$group": {"_id": {"$concat": [f"${reference}.t", "/", f"${reference}.i"]}}},
                {"$limit": MAX_SEMI_JOIN + 1},
            ],
            session=session,
        )
        targets = await cursor.to_list()
        _check_size(len(targets))
        return sorted(d["_id"] for d in targets)

    return Resolver(chain, has)


def _check_size(n: int) -> None:
    if n > MAX_SEMI_JOIN:
        raise FhirError(
            400,
            f"A chained or _has criterion matches more than {MAX_SEMI_JOIN} resources; "
            "add criteria that narrow it",
            code="too-costly",
        )


async def run_search(collection: Any, query: SearchQuery, session: Any) -> SearchPage:
    """Run one page of ``query`` (matches, includes, optional total) on the ``resources`` collection."""
    page = SearchPage(matches=[], warnings=list(query.warnings))
    flt = await compile_query(query, _resolver(collection, session))
    if query.total in ("accurate", "estimate") or query.summary == "count":
        page.total = await collection.count_documents(flt, session=session)
    if query.count == 0 or query.summary == "count":
        return page
    cursor = query.cursor
    backwards = bool(cursor and cursor.get("d") == "p")
    if cursor is not None and len(cursor["k"]) != len(query.sort):
        raise FhirError(
            400, "Invalid search parameter '_cursor': it belongs to a different _sort", expression=["_cursor"]
        )
    columns = _columns(query.sort)
    order = [(field, -1 if descending != backwards else 1) for field, descending, _ in columns]
    projection = {
        **RESOURCE_FIELDS,
        **({ARRAYS["reference"]: 1} if query.includes or query.revincludes else {}),
    }
    stages = sort_stages(query.sort)
    keyset = keyset_filter(query.sort, cursor, backwards) if cursor is not None else None
    if stages:
        pipeline = [{"$match": flt}, *stages]
        if keyset is not None:
            pipeline.append({"$match": keyset})
        pipeline += [
            {"$sort": dict(order)},
            {"$limit": query.count + 1},
            {"$project": {**projection, **{f: 1 for f, _, _ in columns}}},
        ]
        docs = await (await collection.aggregate(pipeline, session=session)).to_list()
    else:
        page_flt = {"$and": [flt, keyset]} if keyset is not None else flt
        docs = (
            await collection.find(page_flt, projection, session=session)
            .sort(order)
            .limit(query.count + 1)
            .to_list()
        )
    more = len(docs) > query.count
    docs = docs[: query.count]
    if backwards:
        docs.reverse()

    def position(doc: dict[str, Any], direction: str) -> str:
        keys = [doc.get(field) for field, _, n in columns if n is not None]
        return encode_cursor({"k": keys, "r": doc["rid"], "d": direction})

    page.next_cursor, page.prev_cursor = page_cursors(
        docs, position, backwards=backwards, more=more, cursor=cursor
    )
    page.matches = [stored(d) for d in docs]
    if page.total is None and cursor is None and not more:
        page.total = len(docs)
    if query.includes or query.revincludes:
        page.included = await _includes(collection, session, query, docs, page)
    return page


async def _includes(
    collection: Any, session: Any, query: SearchQuery, matches: list[dict[str, Any]], page: SearchPage
) -> list[Any]:
    seen = {d["_id"] for d in matches}
    included = []
    frontier = matches
    budget = query.max_include
    projection = {**RESOURCE_FIELDS, ARRAYS["reference"]: 1}
    for depth in range(MAX_INCLUDE_DEPTH + 1):
        if not frontier or budget <= 0:
            break
        found: list[dict[str, Any]] = []
        steps = [(inc, _forward) for inc in query.includes] + [(inc, _reverse) for inc in query.revincludes]
        for inc, step in steps:
            if depth == 0 or inc.iterate:
                flt = step(inc, frontier, query.access)
                if flt is not None:
                    found += (
                        await collection.find(flt, projection, session=session)
                        .sort([("rid", 1)])
                        .limit(budget + 1)
                        .to_list()
                    )
        frontier = []
        for doc in found:
            if doc["_id"] in seen:
                continue
            seen.add(doc["_id"])
            if budget <= 0:
                page.warnings.append(
                    f"More than {query.max_include} included resources; the rest were left out"
                )
                break
            budget -= 1
            included.append(stored(doc))
            frontier.append(doc)
        if not any(i.iterate for i in (*query.includes, *query.revincludes)):
            break
    return included


def include_filter(
    inc: Include, frontier: list[dict[str, Any]], reverse: bool, access: Access | None = None
) -> Filter | None:
    """The filter for one ``_include`` (or ``_revinclude``) round from ``frontier``, None if empty;
    with ``access``, only the resources the caller may see are included."""
    return _reverse(inc, frontier, access) if reverse else _forward(inc, frontier, access)


def _restricted(flt: Filter, access: Access | None, candidate: str | None) -> Filter:
    if access is None:
        return flt
    return {**flt, "$and": [visible_filter(access, (candidate,) if candidate else None)]}


def _forward(inc: Include, frontier: list[dict[str, Any]], access: Access | None) -> Filter | None:
    # The references are already in the frontier documents: read them there, fetch the targets by _id.
    if inc.source_type is not None and not inc.keys:
        return None
    keys = set(inc.keys)
    targets: set[str] = set()
    for doc in frontier:
        if inc.source_type is not None and doc["t"] != inc.source_type:
            continue
        for ref in doc.get(ARRAYS["reference"], []) or []:
            if "t" not in ref or "i" not in ref or (keys and ref["k"] not in keys):
                continue
            if inc.target_type and ref["t"] != inc.target_type:
                continue
            targets.add(f"{ref['t']}/{ref['i']}")
    if not targets:
        return None
    return _restricted({"_id": {"$in": sorted(targets)}, "m": NOT_DELETED}, access, inc.target_type)


def _reverse(inc: Include, frontier: list[dict[str, Any]], access: Access | None) -> Filter | None:
    if inc.source_type is not None and not inc.keys:
        return None
    by_type: dict[str, set[str]] = {}
    for doc in frontier:
        if inc.target_type is None or doc["t"] == inc.target_type:
            by_type.setdefault(doc["t"], set()).add(doc["i"])
    if not by_type:
        return None
    match: Filter = {}
    if inc.keys:
        match["k"] = {"$in": list(inc.keys)}
    options = [{"t": t, "i": {"$in": sorted(ids)}} for t, ids in sorted(by_type.items())]
    if len(options) == 1:
        match.update(options[0])
    else:
        match["$or"] = options
    flt: Filter = {ARRAYS["reference"]: {"$elemMatch": match}, "m": NOT_DELETED}
    if inc.source_type:
        flt["t"] = inc.source_type
    return _restricted(flt, access, inc.source_type)


async def run_scan(collection: Any, query: SearchQuery, after: int, limit: int, max_bytes: int) -> ScanPage:
    """``Store.scan``: documents arrive in driver batches (at most 16 MiB each) and reading stops at
    the byte budget, so a page never holds much more than ``max_bytes``."""
    flt = await compile_query(query, _resolver(collection, None))
    cursor = collection.find({"$and": [flt, {"rid": {"$gt": after}}]}, RESOURCE_FIELDS)
    cursor = cursor.sort([("rid", 1)]).limit(limit)
    out: list[StoredResource] = []
    size = 0
    last = None
    async for doc in cursor:
        out.append(stored(doc))
        last = doc["rid"]
        size += len(doc["b"])
        if size >= max_bytes:
            close = getattr(cursor, "close", None)
            if close is not None:
                await close()
            return ScanPage(out, last)
    return ScanPage(out, last if len(out) == limit else None)
