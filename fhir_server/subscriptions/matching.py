"""Does one resource version match a subscription's criteria? Answered from its index rows.

A subscription's ``criteria`` is parsed once into the same query tree every backend compiles. For
each version written, the tree is evaluated here against the index rows the write path extracted
for it (the Python twin of the SQL compiler's value tests, as ``security.access.visible`` is of the
consent restriction), so matching 100 subscriptions costs microseconds, not 100 searches. Conditions
that need other resources (chains, ``_has``, compartments) answer ``None``: the caller then runs the
search inside the write transaction, restricted to this resource's id.
"""

from __future__ import annotations

from typing import Any

from fhir_server.search.model import IndexRows
from fhir_server.search.query import (
    AllOf,
    AnyOf,
    CodeSetValue,
    IdTest,
    LastUpdatedTest,
    Missing,
    OfTypeValue,
    ParamTest,
    RangeValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.search.values import date_range, normalize, now_ms

_TOP = "\U0010ffff"


class Target:
    """The version being matched: its id, time and index rows, grouped by parameter key."""

    def __init__(self, resource_id: str, last_updated: str, index: IndexRows | None) -> None:
        self.id = resource_id
        self.last_updated = last_updated
        self._index = index
        self._by_table: dict[str, dict[int, list[tuple[Any, ...]]]] = {}

    def rows(self, table: str, key: int) -> list[tuple[Any, ...]]:
        grouped = self._by_table.get(table)
        if grouped is None:
            grouped = {}
            for row in getattr(self._index, table, ()) if self._index is not None else ():
                grouped.setdefault(row[0], []).append(row)
            self._by_table[table] = grouped
        return grouped.get(key, [])


def matches(conditions: tuple[Any, ...], target: Target) -> bool | None:
    """True/False when the index rows decide; None when the store must (chains and the like)."""
    return _all(conditions, target)


def needs_store(conditions: tuple[Any, ...] | list[Any]) -> bool:
    """True when some condition looks at other resources (chains, ``_has``, compartments)."""
    for cond in conditions:
        if isinstance(cond, AllOf):
            if needs_store(cond.conditions):
                return True
        elif isinstance(cond, AnyOf):
            if needs_store(cond.options):
                return True
        elif not isinstance(cond, (ParamTest, Missing, IdTest, LastUpdatedTest)):
            return True
    return False


def _all(conditions: tuple[Any, ...] | list[Any], target: Target) -> bool | None:
    unknown = False
    for cond in conditions:
        result = _one(cond, target)
        if result is False:
            return False
        if result is None:
            unknown = True
    return None if unknown else True


def _one(cond: Any, target: Target) -> bool | None:
    if isinstance(cond, ParamTest):
        rows = target.rows(cond.table, cond.key)
        hit = any(_value(cond.table, value, row) for value in cond.values for row in rows)
        return not hit if cond.negate else hit
    if isinstance(cond, Missing):
        present = bool(target.rows(cond.table, cond.key))
        return not present if cond.missing else present
    if isinstance(cond, IdTest):
        return target.id in cond.ids
    if isinstance(cond, LastUpdatedTest):
        bounds = date_range(target.last_updated)
        if bounds is None:
            return False
        moment = bounds[0]
        return any(_last_updated(value, moment) for value in cond.values)
    if isinstance(cond, AllOf):
        return _all(cond.conditions, target)
    if isinstance(cond, AnyOf):
        unknown = False
        for option in cond.options:
            result = _one(option, target)
            if result is True:
                return True
            if result is None:
                unknown = True
        return None if unknown else False
    return None  # Chain, Has, Compartment, CompositeTest: the store decides


def _value(table: str, value: Any, row: tuple[Any, ...]) -> bool:
    if isinstance(value, StringValue):
        norm, exact = row[1], row[2]
        if value.mode == "exact":
            return bool(norm == normalize(value.text) and exact == value.text)
        if value.mode == "contains":
            return value.text in norm
        return bool(value.text <= norm < value.text + _TOP)
    if isinstance(value, TokenValue):
        system, code = row[1], row[2]
        if value.code is not None and code != value.code:
            return False
        if value.code is not None and value.system is None:
            return True
        if value.system == "":
            return system is None
        return system == value.system or (value.implicit and system is None)
    if isinstance(value, OfTypeValue):
        return row[2] == f"{value.type_code}|{value.value}" and (
            value.system is None or row[1] == value.system
        )
    if isinstance(value, CodeSetValue):
        system, code = row[1], row[2]
        if system is None and code in value.bare:
            return True
        return any(code == c and (system or None) == (s or None) for s, c in value.pairs)
    if isinstance(value, ReferenceValue):
        ttype, tid, version, url = row[1], row[2], row[3], row[4]
        if value.url is not None:
            return url == value.url and (not value.version or version == value.version)
        return tid == value.id and (not value.type or ttype == value.type)
    if isinstance(value, UriValue):
        uri = row[1]
        if value.mode == "below":
            return bool(value.uri <= uri < value.uri + _TOP)
        if value.mode == "above":
            return value.uri[: len(uri)] == uri
        return bool(uri == value.uri)
    if isinstance(value, RangeValue):
        if table == "date":
            return _date(value, row[1], row[2])
        if table == "quantity":
            system, code, lo, hi, ccode, clo, chi = row[1], row[2], row[3], row[4], row[5], row[6], row[7]
            if value.canonical:
                if ccode != value.code or clo is None or chi is None:
                    return False
                lo, hi = clo, chi
            elif value.code and (code != value.code or (value.system and system != value.system)):
                return False
            return _number(value, lo, hi)
        return _number(value, row[1], row[2])
    return False


def _date(value: RangeValue, lo: int, hi: int) -> bool:
    qlo, qhi, p = int(value.low), int(value.high), value.prefix
    inside = lo >= qlo and hi <= qhi
    if p == "eq":
        return inside
    if p == "ne":
        return not inside
    if p == "gt":
        return hi > qhi
    if p == "lt":
        return lo < qlo
    if p == "ge":
        return hi > qhi or inside
    if p == "le":
        return lo < qlo or inside
    if p == "sa":
        return lo > qhi
    if p == "eb":
        return hi < qlo
    gap = max(abs(now_ms() - qlo) // 10, 86_400_000)
    return lo <= qhi + gap and hi >= qlo - gap


def _number(value: RangeValue, lo: float, hi: float) -> bool:
    p, q = value.prefix, value.value
    if p == "eq":
        return lo >= value.low and hi < value.high
    if p == "ne":
        return not (lo >= value.low and hi < value.high)
    if p == "gt":
        return hi > q
    if p == "lt":
        return lo < q
    if p == "ge":
        return hi >= q
    if p == "le":
        return lo <= q
    if p == "sa":
        return lo > q
    if p == "eb":
        return hi < q
    gap = abs(q) * 0.1
    return lo <= q + gap and hi >= q - gap


def _last_updated(value: RangeValue, moment: int) -> bool:
    lo, hi, p = int(value.low), int(value.high), value.prefix
    if p == "eq":
        return lo <= moment <= hi
    if p == "ne":
        return not lo <= moment <= hi
    if p in ("gt", "sa"):
        return moment > hi
    if p in ("lt", "eb"):
        return moment < lo
    if p == "ge":
        return moment >= lo
    if p == "le":
        return moment <= hi
    gap = max(abs(now_ms() - lo) // 10, 86_400_000)
    return lo - gap <= moment <= hi + gap
