"""Compile a search query tree (``fhir_server.search.query``) into MongoDB filter documents.

Every condition becomes a clause over the embedded index arrays of the current-resource document:
a parameter test is an ``$elemMatch`` on one array, led by the parameter key. Values from the request
only ever appear as operands (strings, numbers, a regex built with ``re.escape``), never as field
names or operators, so ``$where`` or ``$ne`` in a query string is data.

Chains and ``_has`` are semi-joins: the inner conditions run first as their own query (through
``Resolver``), and the outer clause tests the ids found. The semantics follow the SQLite compiler.

A query's ``access`` (consent enforcement) becomes one more clause of the main filter and of every
inner query, exactly as SQLite's ``visible()`` builds it, so totals, chains and ``_has`` only ever
see what the caller may see.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from fhir_server import definitions
from fhir_server.search.access import Access, Grant
from fhir_server.search.query import (
    AllOf,
    AnyOf,
    Chain,
    CodeSetValue,
    Compartment,
    CompositeTest,
    Has,
    IdTest,
    InCompartments,
    LastUpdatedTest,
    Missing,
    OfTypeValue,
    ParamTest,
    RangeValue,
    ReferenceValue,
    SearchQuery,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.search.values import ms_to_instant, normalize, now_ms
from fhir_server.storage.mongo.documents import ARRAYS, COMPOSITE

Filter = dict[str, Any]
NEVER: Filter = {"_id": {"$in": []}}
NOT_DELETED: Filter = {"$ne": "DELETE"}
_TOP = "\U0010ffff"


class Resolver:
    """Runs the inner queries of chains and ``_has`` (the store supplies one bound to a session)."""

    def __init__(
        self,
        chain: Callable[[Filter], Awaitable[list[str]]],
        has: Callable[[Filter, int], Awaitable[list[str]]],
    ) -> None:
        self.chain = chain  # ids of resources matching a filter
        self.has = has  # "Type/id" targets of the ``key`` references of resources matching a filter


def base_filter(resource_types: tuple[str, ...]) -> Filter:
    types: Any = resource_types[0] if len(resource_types) == 1 else {"$in": list(resource_types)}
    return {"t": types, "m": NOT_DELETED}


async def compile_query(query: SearchQuery, resolver: Resolver) -> Filter:
    """The filter selecting every match of ``query`` (before paging), within ``query.access``."""
    return await _with_conditions(query.resource_types, query.conditions, resolver, query.access)


async def _with_conditions(
    resource_types: tuple[str, ...], conditions: tuple[Any, ...], resolver: Resolver, access: Access | None
) -> Filter:
    clauses = [await compile_condition(c, resolver, access) for c in conditions]
    if access is not None:
        clauses.append(visible_filter(access, resource_types))
    base = base_filter(resource_types)
    return {**base, "$and": clauses} if clauses else base


def visible_filter(access: Access, candidates: tuple[str, ...] | None) -> Filter:
    """The documents (of one of ``candidates``; None: any type) the caller may see.

    The twin of SQLite's ``visible()``: a type the caller may read at all, and then an open type, a
    document carrying the caller's writing-agency tag, or one covered by a consent grant.
    """
    types = list(candidates) if candidates is not None else sorted(definitions.resource_types())
    if access.types is not None:
        types = [t for t in types if t in access.types]
    opened = [t for t in types if t in access.open_types]
    closed = [t for t in types if t not in access.open_types]
    keys = [access.owner_keys[t] for t in closed if t in access.owner_keys] if access.owner_code else []
    grants = [g for g in access.grants if g.resource_type in closed and g.patients != frozenset()]
    if not (opened or keys or grants):
        return NEVER
    options: list[Filter] = []
    if opened:
        options.append({"t": {"$in": opened}})
    if keys:
        owner = {"k": {"$in": keys}, "c": access.owner_code, "s": access.owner_system}
        options.append({ARRAYS["token"]: {"$elemMatch": owner}})
    options.extend(_grant(g) for g in grants)
    return {"t": {"$in": types}, "$or": options}


def _grant(grant: Grant) -> Filter:
    clause: Filter = {"t": grant.resource_type}
    if grant.patients is not None:
        ids = sorted(grant.patients)
        if not grant.keys:
            clause["i"] = {"$in": ids}
        else:
            link = {"k": {"$in": list(grant.keys)}, "t": "Patient", "i": {"$in": ids}}
            clause[ARRAYS["reference"]] = {"$elemMatch": link}
    claims = {"k": grant.profile_key}
    if grant.profiles:
        clause[ARRAYS["uri"]] = {"$elemMatch": {**claims, "u": {"$in": list(grant.profiles)}}}
    if grant.other_profiles:
        other = {ARRAYS["uri"]: {"$elemMatch": {**claims, "u": {"$in": list(grant.other_profiles)}}}}
        clause["$nor"] = [other]
    return clause


def _any(clauses: list[Filter]) -> Filter:
    if not clauses:
        return NEVER
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


def _elem(array: str, key: int, preds: list[Filter]) -> Filter:
    match: Filter = {"k": key}
    if len(preds) == 1:
        match.update(preds[0])
    else:
        match["$or"] = preds
    return {array: {"$elemMatch": match}}


async def compile_condition(cond: Any, resolver: Resolver, access: Access | None = None) -> Filter:
    """One condition; ``access`` restricts the inner resources of chains and ``_has``."""
    if isinstance(cond, ParamTest):
        clause = _elem(ARRAYS[cond.table], cond.key, [value_predicate(cond.table, v) for v in cond.values])
        return {"$nor": [clause]} if cond.negate else clause
    if isinstance(cond, Missing):
        array = ARRAYS[cond.table]
        present = [{f"{array}.k": cond.key}, {f"{COMPOSITE}.{array}.k": cond.key}]
        return {"$nor": present} if cond.missing else {"$or": present}
    if isinstance(cond, IdTest):
        return {"i": {"$in": list(cond.ids)}}
    if isinstance(cond, LastUpdatedTest):
        return _any([_last_updated(v) for v in cond.values])
    if isinstance(cond, AnyOf):
        return _any([await compile_condition(c, resolver, access) for c in cond.options])
    if isinstance(cond, AllOf):
        return (
            {"$and": [await compile_condition(c, resolver, access) for c in cond.conditions]}
            if cond.conditions
            else {}
        )
    if isinstance(cond, Chain):
        inner = await _with_conditions((cond.target_type,), cond.inner, resolver, access)
        ids = await resolver.chain(inner)
        return {
            ARRAYS["reference"]: {"$elemMatch": {"k": cond.key, "t": cond.target_type, "i": {"$in": ids}}}
        }
    if isinstance(cond, Has):
        inner = await _with_conditions((cond.source_type,), cond.inner, resolver, access)
        return {"_id": {"$in": await resolver.has(inner, cond.key)}}
    if isinstance(cond, Compartment):
        if cond.is_self:
            return {"t": cond.compartment_type, "i": cond.compartment_id}
        return {
            ARRAYS["reference"]: {
                "$elemMatch": {
                    "k": {"$in": list(cond.keys)},
                    "i": cond.compartment_id,
                    "t": cond.compartment_type,
                }
            }
        }
    if isinstance(cond, InCompartments):
        if cond.is_self:
            head: Filter = {"t": cond.compartment_type}
            return {**head, "i": {"$in": list(cond.ids)}} if cond.ids is not None else head
        if not cond.keys:
            return {"_id": {"$in": []}}
        match: Filter = {"k": {"$in": list(cond.keys)}, "t": cond.compartment_type}
        if cond.ids is not None:
            match["i"] = {"$in": list(cond.ids)}
        return {ARRAYS["reference"]: {"$elemMatch": match}}
    if isinstance(cond, CompositeTest):
        options = []
        for option in cond.values:
            parts = [
                {ARRAYS[table]: {"$elemMatch": {"k": key, **value_predicate(table, value)}}}
                for table, key, value in option
            ]
            options.append({COMPOSITE: {"$elemMatch": {"$and": parts}}})
        return _any(options)
    raise TypeError(f"unknown condition {cond!r}")


def value_predicate(table: str, val: Any) -> Filter:
    """The test one value makes on one index entry (fields relative to the entry)."""
    if isinstance(val, StringValue):
        if val.mode == "exact":
            return {"n": normalize(val.text), "e": val.text}
        if val.mode == "contains":
            return {"n": {"$regex": re.escape(val.text)}}
        return {"n": {"$gte": val.text, "$lt": val.text + _TOP}}
    if isinstance(val, TokenValue):
        if val.code is None:
            return {"s": val.system}
        if val.system is None:
            return {"c": val.code}
        if val.implicit:  # a ``code`` element's bound system: rows stored without a system match too
            return {"c": val.code, "s": {"$in": [val.system, None]}}
        return {"c": val.code, "s": None if val.system == "" else val.system}
    if isinstance(val, OfTypeValue):
        pred: Filter = {"c": f"{val.type_code}|{val.value}"}
        if val.system is not None:
            pred["s"] = val.system
        return pred
    if isinstance(val, CodeSetValue):
        if not val.pairs and not val.bare:
            return {"c": {"$in": []}}
        alternatives: list[Filter] = [{"c": code, "s": system} for system, code in val.pairs]
        if val.bare:  # codes that match index entries stored without a system (``code`` elements)
            alternatives.append({"c": {"$in": list(val.bare)}, "s": None})
        return {"$or": alternatives}
    if isinstance(val, ReferenceValue):
        if val.url is not None:
            pred = {"u": val.url}
            if val.version:
                pred["v"] = val.version
            return pred
        pred = {"i": val.id}
        if val.type:
            pred["t"] = val.type
        return pred
    if isinstance(val, UriValue):
        if val.mode == "below":
            return {"u": {"$gte": val.uri, "$lt": val.uri + _TOP}}
        if val.mode == "above":
            # The stored uri is a prefix of the searched one: one indexed lookup per prefix.
            return {"u": {"$in": [val.uri[:n] for n in range(1, len(val.uri) + 1)]}}
        return {"u": val.uri}
    if isinstance(val, RangeValue):
        if table == "date":
            return _date(val)
        lo, hi = "l", "h"
        unit: Filter = {}
        if table == "quantity":
            if val.canonical:
                lo, hi = "cl", "ch"
                unit = {"cc": val.code}
            elif val.code:
                unit = {"c": val.code}
                if val.system:
                    unit["s"] = val.system
        return {**unit, **_number(val, lo, hi)}
    raise TypeError(f"unknown value {val!r}")


def _date(val: RangeValue) -> Filter:
    qlo, qhi = int(val.low), int(val.high)
    within = {"l": {"$gte": qlo}, "h": {"$lte": qhi}}
    p = val.prefix
    if p == "eq":
        return within
    if p == "ne":
        return {"$or": [{"l": {"$lt": qlo}}, {"h": {"$gt": qhi}}]}
    if p == "gt":
        return {"h": {"$gt": qhi}}
    if p == "lt":
        return {"l": {"$lt": qlo}}
    if p == "ge":
        return {"$or": [{"h": {"$gt": qhi}}, within]}
    if p == "le":
        return {"$or": [{"l": {"$lt": qlo}}, within]}
    if p == "sa":
        return {"l": {"$gt": qhi}}
    if p == "eb":
        return {"h": {"$lt": qlo}}
    gap = max(abs(now_ms() - qlo) // 10, 86_400_000)  # ap: 10% of the distance from now, at least a day
    return {"l": {"$lte": qhi + gap}, "h": {"$gte": qlo - gap}}


def _number(val: RangeValue, lo: str, hi: str) -> Filter:
    p, q = val.prefix, val.value
    if p == "eq":
        return {lo: {"$gte": val.low}, hi: {"$lt": val.high}}
    if p == "ne":
        return {"$or": [{lo: {"$lt": val.low}}, {hi: {"$gte": val.high}}]}
    if p == "gt":
        return {hi: {"$gt": q}}
    if p == "lt":
        return {lo: {"$lt": q}}
    if p == "ge":
        return {hi: {"$gte": q}}
    if p == "le":
        return {lo: {"$lte": q}}
    if p == "sa":
        return {lo: {"$gt": q}}
    if p == "eb":
        return {hi: {"$lt": q}}
    gap = abs(q) * 0.1
    return {lo: {"$lte": q + gap}, hi: {"$gte": q - gap}}


def _last_updated(val: RangeValue) -> Filter:
    lo, hi = ms_to_instant(int(val.low)), ms_to_instant(int(val.high))
    p = val.prefix
    if p == "eq":
        return {"lu": {"$gte": lo, "$lte": hi}}
    if p == "ne":
        return {"$or": [{"lu": {"$lt": lo}}, {"lu": {"$gt": hi}}]}
    if p in ("gt", "sa"):
        return {"lu": {"$gt": hi}}
    if p in ("lt", "eb"):
        return {"lu": {"$lt": lo}}
    if p == "ge":
        return {"lu": {"$gte": lo}}
    if p == "le":
        return {"lu": {"$lte": hi}}
    gap = max(abs(now_ms() - int(val.low)) // 10, 86_400_000)
    return {"lu": {"$gte": ms_to_instant(int(val.low) - gap), "$lte": ms_to_instant(int(val.high) + gap)}}
