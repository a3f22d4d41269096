"""Compile a ``SearchQuery`` into SQL over the index tables and run one page of it.

One SQL statement selects a page (plus one statement per include round and an optional count):
every condition becomes a predicate on the resource row, values are always bound parameters, and
paging is by keyset (sort keys + rid) so pages stay consistent while others write and memory stays
bounded by the page size.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_server import definitions
from fhir_server.interactions.errors import FhirError
from fhir_server.search.access import Access, Grant
from fhir_server.search.query import (
    MAX_INCLUDE_DEPTH,
    AllOf,
    AnyOf,
    Chain,
    CodeSetValue,
    Compartment,
    CompositeTest,
    Has,
    IdTest,
    Include,
    InCompartments,
    LastUpdatedTest,
    Missing,
    OfTypeValue,
    ParamTest,
    RangeValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
    encode_cursor,
    page_cursors,
)
from fhir_server.search.result import SearchPage
from fhir_server.search.values import ms_to_instant, normalize, now_ms
from fhir_server.storage.base import ScanPage, StoredResource

_TABLES = {
    "string": "sp_string",
    "token": "sp_token",
    "reference": "sp_ref",
    "date": "sp_date",
    "number": "sp_number",
    "quantity": "sp_quantity",
    "uri": "sp_uri",
}
_TOP = "\U0010ffff"
_COLUMNS = "r.rid, r.type, r.id, r.version, r.last_updated, r.method, r.body"


def _merge_compartments(options: tuple[Any, ...]) -> list[Any]:
    """Compartment options of one compartment merged into one (the union of their keys).

    ``rid IN (refs by keys A) OR rid IN (refs by keys B)`` is ``rid IN (refs by A and B)``; a record
    over many types (``$everything``, the child summary) ORs dozens of such probes, which SQLite
    answers by scanning every resource of those types instead of one look-up in the reference index.
    """
    at_index: dict[tuple[str, str], int] = {}
    out: list[Any] = []
    for option in options:
        if isinstance(option, Compartment) and not option.is_self:
            at = (option.compartment_type, option.compartment_id)
            if at in at_index:
                first = out[at_index[at]]
                keys = tuple(dict.fromkeys((*first.keys, *option.keys)))
                out[at_index[at]] = Compartment(first.compartment_type, first.compartment_id, keys)
                continue
            at_index[at] = len(out)
        out.append(option)
    return out


class _Compiler:
    """Builds SQL text and its bound arguments together, so they can never drift apart."""

    def __init__(self, access: Access | None = None, *, correlated: bool = False) -> None:
        self.args: list[Any] = []
        self._aliases = itertools.count()
        self.access = access
        # Access and cohort tests as per-row probes (EXISTS on the rid-led indexes) instead of IN-lists:
        # a scan (bulk export) walks a type in rid order anyway, and an IN-list (every resource an agency
        # owns, or of the consented children) would be rebuilt for each page. Sets of children are
        # tested by ``termtem_member``, a lookup in the Python set, instead of being bound as JSON.
        self.correlated = correlated
        self.member_sets: list[frozenset[str]] = []

    def member(self, ids: frozenset[str], column: str) -> str | None:
        """A per-row membership test of ``column`` in ``ids`` (scans only); None: use an IN-list."""
        if not self.correlated:
            return None
        self.member_sets.append(ids)
        return f"termtem_member({self.bind(len(self.member_sets) - 1)}, {column})"

    def alias(self, prefix: str) -> str:
        return f"{prefix}{next(self._aliases)}"

    def bind(self, *values: Any) -> str:
        self.args.extend(values)
        return ",".join("?" * len(values))

    # --- conditions --------------------------------------------------------------------------------

    def condition(self, cond: Any, a: str) -> str:
        if isinstance(cond, ParamTest):
            return self._param_test(cond, a)
        if isinstance(cond, Missing):
            t = self.alias("m")
            sql = (
                f"EXISTS (SELECT 1 FROM {_TABLES[cond.table]} {t}"
                f" WHERE {t}.rid = {a}.rid AND {t}.pkey = {self.bind(cond.key)})"
            )
            return f"NOT {sql}" if cond.missing else sql
        if isinstance(cond, IdTest):
            if not cond.ids:
                return "0"
            return f"{a}.id IN ({self.bind(*cond.ids)})"
        if isinstance(cond, LastUpdatedTest):
            return "(" + " OR ".join(self._last_updated(v, a) for v in cond.values) + ")"
        if isinstance(cond, AnyOf):
            if not cond.options:
                return "0"
            options = _merge_compartments(cond.options)
            return "(" + " OR ".join(self.condition(c, a) for c in options) + ")"
        if isinstance(cond, AllOf):
            if not cond.conditions:
                return "1"
            return "(" + " AND ".join(self.condition(c, a) for c in cond.conditions) + ")"
        if isinstance(cond, Chain):
            x, t = self.alias("x"), self.alias("t")
            head = (
                f"{a}.rid IN (SELECT {x}.rid FROM sp_ref {x} WHERE {x}.pkey = {self.bind(cond.key)}"
                f" AND {x}.ttype = {self.bind(cond.target_type)}"
                f" AND {x}.tid IN (SELECT {t}.id FROM resource {t}"
                f" WHERE {t}.type = {self.bind(cond.target_type)} AND {t}.method != 'DELETE'"
            )
            inner = "".join(f" AND {self.condition(c, t)}" for c in cond.inner)
            if self.access is not None:
                inner += f" AND {self.visible(self.access, t, (cond.target_type,))}"
            return f"{head}{inner}))"
        if isinstance(cond, Has):
            if self.access is None and _answerable_from_index(cond.inner):
                # the source's own conditions from the index alone: no probe of its resource rows
                x = self.alias("x")
                key = self.bind(cond.key)
                sources = _match(self, SearchQuery(resource_types=(cond.source_type,), conditions=cond.inner))
                return (
                    f"({a}.type, {a}.id) IN (SELECT {x}.ttype, {x}.tid FROM sp_ref {x}"
                    f" WHERE {x}.pkey = {key} AND {x}.rid IN ({sources.select()}))"
                )
            x, s = self.alias("x"), self.alias("s")
            head = (
                f"({a}.type, {a}.id) IN (SELECT {x}.ttype, {x}.tid FROM sp_ref {x}"
                f" WHERE {x}.pkey = {self.bind(cond.key)} AND {x}.rid IN (SELECT {s}.rid FROM resource {s}"
                f" WHERE {s}.type = {self.bind(cond.source_type)} AND {s}.method != 'DELETE'"
            )
            inner = "".join(f" AND {self.condition(c, s)}" for c in cond.inner)
            if self.access is not None:
                inner += f" AND {self.visible(self.access, s, (cond.source_type,))}"
            return f"{head}{inner}))"
        if isinstance(cond, Compartment):
            if cond.is_self:
                ctype, cid = self.bind(cond.compartment_type), self.bind(cond.compartment_id)
                return f"({a}.type = {ctype} AND {a}.id = {cid})"
            x = self.alias("x")
            return (
                f"{a}.rid IN (SELECT {x}.rid FROM sp_ref {x} WHERE {x}.pkey IN ({self.bind(*cond.keys)})"
                f" AND {x}.tid = {self.bind(cond.compartment_id)}"
                f" AND {x}.ttype = {self.bind(cond.compartment_type)})"
            )
        if isinstance(cond, InCompartments):
            # Arguments are bound in the order their placeholders appear in the text.
            ids = orjson.dumps(list(cond.ids)).decode() if cond.ids is not None else None
            if cond.is_self:
                head = f"{a}.type = {self.bind(cond.compartment_type)}"
                if ids is None:
                    return head
                probe = self.member(frozenset(cond.ids or ()), f"{a}.id")
                if probe is not None:
                    return f"({head} AND {probe})"
                return f"({head} AND {a}.id IN (SELECT value FROM json_each({self.bind(ids)})))"
            if not cond.keys:
                return "0"
            x = self.alias("x")
            if self.correlated:
                keys, ctype = self.bind(*cond.keys), self.bind(cond.compartment_type)
                probe = self.member(frozenset(cond.ids), f"{x}.tid") if cond.ids is not None else None
                return (
                    f"EXISTS (SELECT 1 FROM sp_ref {x} WHERE {x}.rid = {a}.rid AND {x}.pkey IN ({keys})"
                    f" AND {x}.ttype = {ctype}{f' AND {probe}' if probe else ''})"
                )
            sql = (
                f"{a}.rid IN (SELECT {x}.rid FROM sp_ref {x} WHERE {x}.pkey IN ({self.bind(*cond.keys)})"
                f" AND {x}.ttype = {self.bind(cond.compartment_type)}"
            )
            if ids is not None:
                sql += f" AND {x}.tid IN (SELECT value FROM json_each({self.bind(ids)}))"
            return sql + ")"
        if isinstance(cond, CompositeTest):
            return self._composite(cond, a)
        raise TypeError(f"unknown condition {cond!r}")

    def _param_test(self, cond: ParamTest, a: str) -> str:
        table = _TABLES[cond.table]
        v = self.alias("v")
        key = self.bind(cond.key)
        preds = self.values(cond.table, cond.values, v)
        sql = f"{a}.rid IN (SELECT {v}.rid FROM {table} {v} WHERE {v}.pkey = {key} AND ({preds}))"
        if cond.negate:
            return f"NOT {sql}"
        return sql

    def _composite(self, cond: CompositeTest, a: str) -> str:
        selects = []
        for option in cond.values:
            aliases = [self.alias("c") for _ in option]
            parts = []
            where = []
            for i, ((table, key, value), c) in enumerate(zip(option, aliases, strict=True)):
                if i == 0:
                    parts.append(f"{_TABLES[table]} {c}")
                else:
                    parts.append(
                        f"JOIN {_TABLES[table]} {c}"
                        f" ON {c}.rid = {aliases[0]}.rid AND {c}.grp = {aliases[0]}.grp"
                    )
                where.append(f"{c}.pkey = {self.bind(key)} AND {self.value(table, value, c)}")
            selects.append(f"SELECT {aliases[0]}.rid FROM {' '.join(parts)} WHERE {' AND '.join(where)}")
        return f"{a}.rid IN ({' UNION '.join(selects)})"

    # --- access (consent enforcement) --------------------------------------------------------------

    def visible(self, access: Access, a: str, candidates: tuple[str, ...] | None) -> str:
        """The rows at alias ``a`` (of one of ``candidates``, None: any type) the caller may see."""
        types = list(candidates) if candidates is not None else sorted(definitions.resource_types())
        if access.types is not None:
            types = [t for t in types if t in access.types]
        opened = [t for t in types if t in access.open_types]
        closed = [t for t in types if t not in access.open_types]
        keys = [access.owner_keys[t] for t in closed if t in access.owner_keys] if access.owner_code else []
        grants = [g for g in access.grants if g.resource_type in closed and g.patients != frozenset()]
        if not (opened or keys or grants):
            return "0"
        # Text and arguments are produced together, in the order they appear.
        head = f"{a}.type IN ({self.bind(*types)})"
        options = []
        if opened:
            options.append(f"{a}.type IN ({self.bind(*opened)})")
        if keys:
            o = self.alias("o")
            if self.correlated:
                options.append(
                    f"EXISTS (SELECT 1 FROM sp_token {o} WHERE {o}.rid = {a}.rid"
                    f" AND {o}.pkey IN ({self.bind(*keys)}) AND {o}.code = {self.bind(access.owner_code)}"
                    f" AND {o}.sys = {self.bind(access.owner_system)})"
                )
            else:
                options.append(
                    f"{a}.rid IN (SELECT {o}.rid FROM sp_token {o} WHERE {o}.pkey IN ({self.bind(*keys)})"
                    f" AND {o}.code = {self.bind(access.owner_code)}"
                    f" AND {o}.sys = {self.bind(access.owner_system)})"
                )
        options.extend(self._grant(g, a) for g in grants)
        return f"({head} AND ({' OR '.join(options)}))"

    def _grant(self, grant: Grant, a: str) -> str:
        parts = [f"{a}.type = {self.bind(grant.resource_type)}"]
        if grant.patients is not None:
            ids = _json_ids(grant.patients)
            if not grant.keys:
                probe = self.member(grant.patients, f"{a}.id")
                parts.append(probe or f"{a}.id IN (SELECT value FROM json_each({self.bind(ids)}))")
            elif self.correlated:
                x = self.alias("x")
                keys = self.bind(*grant.keys)
                probe = self.member(grant.patients, f"{x}.tid")
                parts.append(
                    f"EXISTS (SELECT 1 FROM sp_ref {x} WHERE {x}.rid = {a}.rid"
                    f" AND {x}.pkey IN ({keys}) AND {x}.ttype = 'Patient' AND {probe})"
                )
            else:
                x = self.alias("x")
                parts.append(
                    f"{a}.rid IN (SELECT {x}.rid FROM sp_ref {x} WHERE {x}.pkey IN ({self.bind(*grant.keys)})"
                    f" AND {x}.ttype = 'Patient'"
                    f" AND {x}.tid IN (SELECT value FROM json_each({self.bind(ids)})))"
                )
        for profiles, negate in ((grant.profiles, False), (grant.other_profiles, True)):
            if profiles:
                u = self.alias("u")
                test = (
                    f"EXISTS (SELECT 1 FROM sp_uri {u} WHERE {u}.rid = {a}.rid AND {u}.pkey ="
                    f" {self.bind(grant.profile_key)} AND {u}.uri IN ({self.bind(*profiles)}))"
                )
                parts.append(f"NOT {test}" if negate else test)
        return "(" + " AND ".join(parts) + ")"

    # --- values ------------------------------------------------------------------------------------

    def values(self, table: str, values: Any, v: str) -> str:
        """The OR of ``values``. Tokens with a code and a system are grouped per system into one
        ``code IN (...) AND sys = ?`` term, and references with a type and an id per type, so a long
        list (``identifier=a,b,c``, ``subject=Patient/a,Patient/b``, blocking keys) is a few index
        look-ups on (pkey, code) or (pkey, tid), not a scan of every row of the parameter."""
        # (value column, group column, group) -> the values: tokens by system, references by type
        groups: dict[tuple[str, str, str], list[Any]] = {}
        preds = []
        for val in values:
            if type(val) is TokenValue and val.code is not None and val.system and not val.implicit:
                groups.setdefault(("code", "sys", val.system), []).append(val)
            elif (
                type(val) is ReferenceValue
                and val.url is None
                and val.version is None
                and val.type
                and val.id is not None
            ):
                groups.setdefault(("tid", "ttype", val.type), []).append(val)
            else:
                preds.append(self.value(table, val, v))  # bound in text order: these come first
        for (column, group_column, group), members in groups.items():
            if len(members) == 1:
                preds.append(self.value(table, members[0], v))
                continue
            keys = {m.code if column == "code" else m.id for m in members}
            listed = orjson.dumps(sorted(keys)).decode()
            preds.append(  # "+": look up by the value, never scan the group column
                f"({v}.{column} IN (SELECT value FROM json_each({self.bind(listed)}))"
                f" AND +{v}.{group_column} = {self.bind(group)})"
            )
        return " OR ".join(preds)

    def value(self, table: str, val: Any, v: str) -> str:
        if isinstance(val, StringValue):
            if val.mode == "exact":
                return f"({v}.norm = {self.bind(normalize(val.text))} AND {v}.exact = {self.bind(val.text)})"
            if val.mode == "contains":
                return f"instr({v}.norm, {self.bind(val.text)}) > 0"
            return f"({v}.norm >= {self.bind(val.text)} AND {v}.norm < {self.bind(val.text + _TOP)})"
        if isinstance(val, TokenValue):
            if val.code is None:
                return self._system(val, v)
            code = f"{v}.code = {self.bind(val.code)}"
            if val.system is None:
                return code
            if val.system == "":
                return f"({code} AND {v}.sys IS NULL)"
            return f"({code} AND {self._system(val, v)})"
        if isinstance(val, OfTypeValue):
            code = f"{v}.code = {self.bind(f'{val.type_code}|{val.value}')}"
            return code if val.system is None else f"({code} AND {v}.sys = {self.bind(val.system)})"
        if isinstance(val, CodeSetValue):
            # one (system = ? AND code IN list) per code system of the expansion, so each term is an
            # index range on (pkey, code, sys) and no row needs string building
            by_system: dict[str | None, set[str]] = {}
            for system, code in val.pairs:
                by_system.setdefault(system or None, set()).add(code)
            if val.bare:
                by_system.setdefault(None, set()).update(val.bare)
            terms = []
            for system, codes in sorted(by_system.items(), key=lambda item: item[0] or ""):
                listed = orjson.dumps(sorted(codes)).decode()
                listed = f"{v}.code IN (SELECT value FROM json_each({self.bind(listed)}))"
                sys_test = f"{v}.sys IS NULL" if system is None else f"{v}.sys = {self.bind(system)}"
                terms.append(f"({listed} AND {sys_test})")
            return f"({' OR '.join(terms)})" if terms else "0"
        if isinstance(val, ReferenceValue):
            if val.url is not None:
                sql = f"{v}.url = {self.bind(val.url)}"
                if val.version:
                    sql = f"({sql} AND {v}.ver = {self.bind(val.version)})"
                return sql
            sql = f"{v}.tid = {self.bind(val.id)}"
            if val.type:
                sql = f"({sql} AND {v}.ttype = {self.bind(val.type)})"
            return sql
        if isinstance(val, UriValue):
            if val.mode == "below":
                return f"({v}.uri >= {self.bind(val.uri)} AND {v}.uri < {self.bind(val.uri + _TOP)})"
            if val.mode == "above":
                return f"substr({self.bind(val.uri)}, 1, length({v}.uri)) = {v}.uri"
            return f"{v}.uri = {self.bind(val.uri)}"
        if isinstance(val, RangeValue):
            if table == "date":
                return self._date(val, f"{v}.lo", f"{v}.hi")
            lo, hi = f"{v}.lo", f"{v}.hi"
            unit = ""
            if table == "quantity":
                if val.canonical:
                    lo, hi = f"{v}.clo", f"{v}.chi"
                    unit = f"{v}.ccode = {self.bind(val.code)} AND "
                elif val.code:
                    unit = f"{v}.code = {self.bind(val.code)} AND "
                    if val.system:
                        unit += f"{v}.sys = {self.bind(val.system)} AND "
            return f"({unit}{self._number(val, lo, hi)})"
        raise TypeError(f"unknown value {val!r}")

    def _system(self, val: TokenValue, v: str) -> str:
        system = f"{v}.sys = {self.bind(val.system)}"
        # a code element's system is implied by its binding: its rows carry none
        return f"({system} OR {v}.sys IS NULL)" if val.implicit else system

    def _date(self, val: RangeValue, lo: str, hi: str) -> str:
        qlo, qhi = int(val.low), int(val.high)
        p = val.prefix
        if p == "eq":
            return f"({lo} >= {self.bind(qlo)} AND {hi} <= {self.bind(qhi)})"
        if p == "ne":
            return f"NOT ({lo} >= {self.bind(qlo)} AND {hi} <= {self.bind(qhi)})"
        if p == "gt":
            return f"{hi} > {self.bind(qhi)}"
        if p == "lt":
            return f"{lo} < {self.bind(qlo)}"
        if p == "ge":
            return f"({hi} > {self.bind(qhi)} OR ({lo} >= {self.bind(qlo)} AND {hi} <= {self.bind(qhi)}))"
        if p == "le":
            return f"({lo} < {self.bind(qlo)} OR ({lo} >= {self.bind(qlo)} AND {hi} <= {self.bind(qhi)}))"
        if p == "sa":
            return f"{lo} > {self.bind(qhi)}"
        if p == "eb":
            return f"{hi} < {self.bind(qlo)}"
        # ap: overlap with the search range widened by 10% of its distance from now (at least a day)
        gap = max(abs(now_ms() - qlo) // 10, 86_400_000)
        return f"({lo} <= {self.bind(qhi + gap)} AND {hi} >= {self.bind(qlo - gap)})"

    def _number(self, val: RangeValue, lo: str, hi: str) -> str:
        p, q = val.prefix, val.value
        if p == "eq":
            return f"({lo} >= {self.bind(val.low)} AND {hi} < {self.bind(val.high)})"
        if p == "ne":
            return f"NOT ({lo} >= {self.bind(val.low)} AND {hi} < {self.bind(val.high)})"
        if p == "gt":
            return f"{hi} > {self.bind(q)}"
        if p == "lt":
            return f"{lo} < {self.bind(q)}"
        if p == "ge":
            return f"{hi} >= {self.bind(q)}"
        if p == "le":
            return f"{lo} <= {self.bind(q)}"
        if p == "sa":
            return f"{lo} > {self.bind(q)}"
        if p == "eb":
            return f"{hi} < {self.bind(q)}"
        gap = abs(q) * 0.1
        return f"({lo} <= {self.bind(q + gap)} AND {hi} >= {self.bind(q - gap)})"

    def _last_updated(self, val: RangeValue, a: str) -> str:
        col = f"{a}.last_updated"
        lo, hi = ms_to_instant(int(val.low)), ms_to_instant(int(val.high))
        p = val.prefix
        if p == "eq":
            return f"({col} >= {self.bind(lo)} AND {col} <= {self.bind(hi)})"
        if p == "ne":
            return f"NOT ({col} >= {self.bind(lo)} AND {col} <= {self.bind(hi)})"
        if p in ("gt", "sa"):
            return f"{col} > {self.bind(hi)}"
        if p in ("lt", "eb"):
            return f"{col} < {self.bind(lo)}"
        if p == "ge":
            return f"{col} >= {self.bind(lo)}"
        if p == "le":
            return f"{col} <= {self.bind(hi)}"
        gap = max(abs(now_ms() - int(val.low)) // 10, 86_400_000)
        return (
            f"({col} >= {self.bind(ms_to_instant(int(val.low) - gap))}"
            f" AND {col} <= {self.bind(ms_to_instant(int(val.high) + gap))})"
        )

    # --- sorting -----------------------------------------------------------------------------------

    def sort_join(self, key: SortKey, m: str, res: str) -> tuple[str, str]:
        """(expression, LEFT JOIN clause) giving ``key`` for each match row at alias ``m``.

        The join reads the covering ``(rid, pkey, value)`` index of the value table, so keys come
        from the index alone; several values per resource reduce to their min (asc) or max (desc),
        so the caller groups by rid. ``_id``/``_lastUpdated`` are columns of the resource row at
        alias ``res`` (no join, no aggregate).
        """
        if key.table is None:
            return (f"{res}.id" if key.name == "_id" else f"{res}.last_updated"), ""
        agg = "max" if key.descending else "min"
        s = self.alias("o")
        column = {
            "string": "{s}.norm",
            "token": "{s}.code",
            "uri": "{s}.uri",
            "reference": "{s}.ttype || '/' || {s}.tid",
            "date": "{s}.hi" if key.descending else "{s}.lo",
            "number": "{s}.hi" if key.descending else "{s}.lo",
            "quantity": "coalesce({s}.chi, {s}.hi)" if key.descending else "coalesce({s}.clo, {s}.lo)",
        }[key.table].format(s=s)
        join = f" LEFT JOIN {_TABLES[key.table]} {s} ON {s}.rid = {m}.rid AND {s}.pkey = {self.bind(key.key)}"
        # Missing values sort last either way: a blob is above every text/number, -inf below all.
        missing = "-9e999" if key.descending else "x'ff'"
        return f"coalesce({agg}({column}), {missing})", join


# Conditions whose SQL reads only index rows, never the resource row. Index rows exist only for the
# current version of live resources (a delete removes them) and every parameter key belongs to one
# resource type, so a resource matching one of these is already known to be live and of that type.
_INDEX_ONLY = (ParamTest, CompositeTest, Chain, Missing, Compartment)


@functools.lru_cache(maxsize=64)
def _json_ids(patients: frozenset[str]) -> str:
    """A grant's children as one bound JSON array (the same sets come back page after page)."""
    return orjson.dumps(sorted(patients)).decode()


def _index_only(cond: Any) -> bool:
    if isinstance(cond, ParamTest):
        return not cond.negate
    if isinstance(cond, Missing):
        return not cond.missing
    if isinstance(cond, Compartment):
        return not cond.is_self
    return isinstance(cond, _INDEX_ONLY)


def _answerable_from_index(conds: tuple[Any, ...]) -> bool:
    """Every condition reads index rows only, and one of them can drive the lookup."""
    return all(map(_index_only, conds)) and any(isinstance(x, ParamTest) and not x.negate for x in conds)


def _base_where(c: _Compiler, query: SearchQuery) -> str:
    if len(query.resource_types) == 1:
        where = [f"r.type = {c.bind(query.resource_types[0])}"]
    else:
        where = [f"r.type IN ({c.bind(*query.resource_types)})"]
    where.append("r.method != 'DELETE'")
    where.extend(c.condition(cond, "r") for cond in query.conditions)
    if c.access is not None:
        where.append(c.visible(c.access, "r", query.resource_types))
    return " AND ".join(where)


@dataclass
class _Match:
    """The matches of a query as parts of one SELECT, so callers add keyset terms, joins and order."""

    source: str  # FROM clause
    where: str
    rid: str  # the rid column
    distinct: bool  # the source can yield a rid more than once (several index rows per resource)

    def select(self, extra: str = "") -> str:
        where = f"{self.where} AND {extra}" if extra else self.where
        distinct = "DISTINCT " if self.distinct else ""
        return f"SELECT {distinct}{self.rid} AS rid FROM {self.source} WHERE {where}"


def _match(c: _Compiler, query: SearchQuery) -> _Match:
    """Every match of ``query``, compiled into ``c`` (its arguments bound in text order).

    When every condition can be answered from the index tables alone, the first plain parameter test
    drives the query from its covering index and the resource table is never touched; otherwise the
    live-resource index of the resource table is the base and the conditions filter it.
    """
    conds = query.conditions
    if len(query.resource_types) == 1 and c.access is None and _answerable_from_index(conds):
        driver = next(x for x in conds if isinstance(x, ParamTest) and not x.negate)
        v = c.alias("d")
        key = c.bind(driver.key)
        preds = c.values(driver.table, driver.values, v)
        where = [f"{v}.pkey = {key} AND ({preds})"]
        where.extend(c.condition(x, v) for x in conds if x is not driver)
        return _Match(f"{_TABLES[driver.table]} {v}", " AND ".join(where), f"{v}.rid", True)
    return _Match("resource r", _base_where(c, query), "r.rid", False)


# _total=estimate: counts up to this many matches are exact; beyond, the count is extrapolated from the
# matches among the newest _ESTIMATE_WINDOW resources of the searched types.
_ESTIMATE_CAP = 1000
_ESTIMATE_WINDOW = 20_000


def _count(conn: sqlite3.Connection, query: SearchQuery) -> int:
    c = _Compiler(query.access)
    sql = _match(c, query).select()
    return int(conn.execute(f"SELECT count(*) FROM ({sql})", c.args).fetchone()[0])


def _estimate(conn: sqlite3.Connection, query: SearchQuery) -> tuple[int, bool]:
    """(total, exact): exact when there are few matches, else extrapolated from a window of rids."""
    c = _Compiler(query.access)
    sql = _match(c, query).select()
    capped = conn.execute(f"SELECT count(*) FROM ({sql} LIMIT ?)", [*c.args, _ESTIMATE_CAP + 1]).fetchone()[0]
    if capped <= _ESTIMATE_CAP:
        return int(capped), True
    types = list(query.resource_types)
    live = "FROM resource WHERE type = ? AND method != 'DELETE'"
    low = high = start = None
    for t in types:  # one type at a time so each is an O(log n) probe of resource_live
        lo, hi = conn.execute(f"SELECT (SELECT min(rid) {live}), (SELECT max(rid) {live})", [t, t]).fetchone()
        if lo is not None:
            low, high = min(low or lo, lo), max(high or hi, hi)
    if len(types) == 1:
        start = conn.execute(
            f"SELECT rid {live} ORDER BY rid DESC LIMIT 1 OFFSET ?", [types[0], _ESTIMATE_WINDOW - 1]
        ).fetchone()
    else:
        marks = ",".join("?" * len(types))
        start = conn.execute(
            f"SELECT rid FROM resource WHERE type IN ({marks}) AND method != 'DELETE'"
            " ORDER BY rid DESC LIMIT 1 OFFSET ?",
            [*types, _ESTIMATE_WINDOW - 1],
        ).fetchone()
    if start is None or low is None or high is None:  # fewer live resources than the window
        return _count(conn, query), True
    c = _Compiler(query.access)
    match = _match(c, query)
    sql = match.select(f"{match.rid} >= {c.bind(start[0])}")
    in_window = conn.execute(f"SELECT count(*) FROM ({sql})", c.args).fetchone()[0]
    scale = (high - low + 1) / (high - start[0] + 1)
    return max(int(capped), round(in_window * scale)), False


def _stored(row: tuple[Any, ...]) -> StoredResource:
    return StoredResource(row[1], row[2], row[3], row[4], row[5], bytes(row[6]))


def _cursor_value(v: Any) -> Any:
    if isinstance(v, bytes) or (isinstance(v, float) and v == float("-inf")):
        return None
    return v


def _bind_cursor_value(v: Any, descending: bool) -> Any:
    if v is None:
        return float("-inf") if descending else b"\xff"
    return v


def _keyset(cols: list[str], descs: list[bool], values: list[Any], backwards: bool) -> tuple[str, list[Any]]:
    """The rows strictly after (before, going backwards) ``values`` in the order (cols..., rid)."""
    ors, args = [], []
    for i in range(len(cols)):
        terms = [f"{cols[j]} = ?" for j in range(i)]
        args.extend(values[:i])
        forward_gt = not descs[i]
        if backwards:
            forward_gt = not forward_gt
        terms.append(f"{cols[i]} {'>' if forward_gt else '<'} ?")
        args.append(values[i])
        ors.append("(" + " AND ".join(terms) + ")")
    return " OR ".join(ors), args


def _rid_descending(query: SearchQuery) -> bool:
    """The tie-breaking rid runs the way the last sort key does, so an index on (key, rid) read in one
    direction gives the whole order (no partial sort of ties)."""
    return bool(query.sort) and query.sort[-1].descending


def _page_sql(query: SearchQuery, backwards: bool) -> tuple[str, list[Any]]:
    """One statement for a page: matches, their sort keys from covering indexes, keyset, order, limit.

    Only the page's rows are joined to the resource table (for their bodies), after the limit, so a
    broad match never loads more than one page of resources.
    """
    c = _Compiler(query.access)
    match = _match(c, query)
    descs = [k.descending for k in query.sort]
    names = [f"k{i}" for i in range(len(query.sort))]
    order = [f"{n} {'ASC' if d == backwards else 'DESC'}" for n, d in zip(names, descs, strict=True)]
    rid_desc = _rid_descending(query)
    order.append(f"rid {'ASC' if rid_desc == backwards else 'DESC'}")
    order_sql = ", ".join(order)
    cursor = query.cursor
    if not query.sort:
        extra = ""
        if cursor is not None:
            extra = f"{match.rid} {'<' if backwards else '>'} {c.bind(cursor['r'])}"
        inner = f"{match.select(extra)} ORDER BY {match.rid} {'DESC' if backwards else 'ASC'} LIMIT ?"
        args = [*c.args, query.count + 1]
    else:
        exprs, joins = [], []
        m = match.rid.split(".")[0]
        # Index-driven matches may repeat a rid, and parameter keys aggregate several values: group.
        # Matches from the resource table sorted by its own columns need neither (and can then be
        # read in order from resource_type_updated / the (type, id) index and stop at the limit).
        group = match.distinct or any(k.table is not None for k in query.sort)
        res = m
        if match.distinct and any(k.table is None for k in query.sort):
            res = "s"
            joins.append(f" JOIN resource s ON s.rid = {match.rid}")
        sc = _Compiler()  # the joins come before the WHERE in the text: their arguments go first
        sc._aliases = c._aliases
        for key in query.sort:
            expr, join = sc.sort_join(key, m, res)
            exprs.append(f"min({expr})" if group and key.table is None else expr)
            joins.append(join)
        keys = "".join(f", {e} AS {n}" for e, n in zip(exprs, names, strict=True))
        inner = f"SELECT {match.rid} AS rid{keys} FROM {match.source}{''.join(joins)} WHERE {match.where}" + (
            f" GROUP BY {match.rid}" if group else ""
        )
        args = [*sc.args, *c.args]
        if cursor is not None:
            values = [_bind_cursor_value(v, d) for v, d in zip(cursor["k"], descs, strict=True)]
            keyset, keyset_args = _keyset(
                [*names, "rid"], [*descs, rid_desc], [*values, cursor["r"]], backwards
            )
            inner = f"SELECT * FROM ({inner}) WHERE {keyset}"
            args.extend(keyset_args)
        inner = f"{inner} ORDER BY {order_sql} LIMIT ?"
        args.append(query.count + 1)
    selected = "".join(f", p.{n}" for n in names)
    sql = (
        f"SELECT {_COLUMNS}{selected} FROM ({inner}) p"
        f" JOIN resource r ON r.rid = p.rid ORDER BY {order_sql.replace('rid ', 'p.rid ')}"
    )
    return sql, args


def run_search(conn: sqlite3.Connection, query: SearchQuery) -> SearchPage:
    """Run one page of ``query`` (matches, includes, optional total) on ``conn``."""
    page = SearchPage(matches=[], warnings=list(query.warnings))
    if query.summary == "count" or query.total == "accurate":
        page.total = _count(conn, query)
    elif query.total == "estimate":
        page.total, exact = _estimate(conn, query)
        page.total_estimated = not exact
    if query.count == 0 or query.summary == "count":
        return page

    cursor = query.cursor
    backwards = bool(cursor and cursor.get("d") == "p")
    if cursor is not None and len(cursor["k"]) != len(query.sort):
        raise FhirError(
            400, "Invalid search parameter '_cursor': it belongs to a different _sort", expression=["_cursor"]
        )
    sql, args = _page_sql(query, backwards)
    rows = conn.execute(sql, args).fetchall()
    more = len(rows) > query.count
    rows = rows[: query.count]
    if backwards:
        rows.reverse()

    def position(row: tuple[Any, ...], direction: str) -> str:
        keys = [_cursor_value(v) for v in row[7:]]
        return encode_cursor({"k": keys, "r": row[0], "d": direction})

    page.next_cursor, page.prev_cursor = page_cursors(
        rows,
        position,
        backwards=backwards,
        more=more,
        cursor=cursor,
        rid_step=-1 if _rid_descending(query) else 1,
    )
    page.matches = [_stored(r) for r in rows]
    if page.total is None and cursor is None and not more:
        page.total = len(rows)
        page.total_estimated = False
    if query.includes or query.revincludes:
        page.included = _includes(conn, query, [(r[0], r[1], r[2]) for r in rows], page)
    return page


def _includes(
    conn: sqlite3.Connection, query: SearchQuery, matches: list[tuple[int, str, str]], page: SearchPage
) -> list[StoredResource]:
    seen = {rid for rid, _, _ in matches}
    included: list[StoredResource] = []
    frontier = matches
    budget = query.max_include
    for depth in range(MAX_INCLUDE_DEPTH + 1):
        if not frontier or budget <= 0:
            break
        found: list[tuple[Any, ...]] = []
        for inc in query.includes:
            if depth == 0 or inc.iterate:
                found.extend(_forward(conn, inc, frontier, budget, query.access))
        for inc in query.revincludes:
            if depth == 0 or inc.iterate:
                found.extend(_reverse(conn, inc, frontier, budget, query.access))
        frontier = []
        for row in found:
            if row[0] in seen:
                continue
            seen.add(row[0])
            if budget <= 0:
                page.warnings.append(
                    f"More than {query.max_include} included resources; the rest were left out"
                )
                break
            budget -= 1
            included.append(_stored(row))
            frontier.append((row[0], row[1], row[2]))
        if not any(i.iterate for i in (*query.includes, *query.revincludes)):
            break
    return included


def _visible_clause(access: Access | None, candidate: str | None, args: list[Any]) -> str:
    """`` AND <visible>`` for included rows at alias ``r`` (its arguments appended to ``args``)."""
    if access is None:
        return ""
    c = _Compiler(access)
    clause = c.visible(access, "r", (candidate,) if candidate else None)
    args.extend(c.args)
    return f" AND {clause}"


def _forward(
    conn: sqlite3.Connection,
    inc: Include,
    frontier: list[tuple[int, str, str]],
    limit: int,
    access: Access | None = None,
) -> list[tuple[Any, ...]]:
    rids = [rid for rid, rtype, _ in frontier if inc.source_type is None or rtype == inc.source_type]
    if not rids or (inc.source_type is not None and not inc.keys):
        return []
    args: list[Any] = [orjson.dumps(rids).decode()]
    sql = (
        f"SELECT DISTINCT {_COLUMNS} FROM sp_ref x JOIN resource r ON r.type = x.ttype AND r.id = x.tid"
        " WHERE x.rid IN (SELECT value FROM json_each(?)) AND r.method != 'DELETE'"
    )
    return _included_rows(conn, sql, args, inc, ("x.ttype", inc.target_type), limit, access)


def _reverse(
    conn: sqlite3.Connection,
    inc: Include,
    frontier: list[tuple[int, str, str]],
    limit: int,
    access: Access | None = None,
) -> list[tuple[Any, ...]]:
    targets = [
        (rtype, rid_) for _, rtype, rid_ in frontier if inc.target_type is None or rtype == inc.target_type
    ]
    if not targets or (inc.source_type is not None and not inc.keys):
        return []
    ids = orjson.dumps(sorted({i for _, i in targets})).decode()
    pairs = orjson.dumps([f"{t}/{i}" for t, i in targets]).decode()
    args: list[Any] = [ids, pairs]
    sql = (
        f"SELECT DISTINCT {_COLUMNS} FROM sp_ref x JOIN resource r ON r.rid = x.rid"
        " WHERE x.tid IN (SELECT value FROM json_each(?))"
        " AND (x.ttype || '/' || x.tid) IN (SELECT value FROM json_each(?)) AND r.method != 'DELETE'"
    )
    return _included_rows(conn, sql, args, inc, ("r.type", inc.source_type), limit, access)


def _included_rows(
    conn: sqlite3.Connection,
    sql: str,
    args: list[Any],
    inc: Include,
    found_type: tuple[str, str | None],
    limit: int,
    access: Access | None,
) -> list[tuple[Any, ...]]:
    """The part of an include query both directions share: the reference parameters followed, the
    type of what is included (``found_type``: its column and the wanted type), visibility, the limit."""
    if inc.keys:
        sql += f" AND x.pkey IN ({','.join('?' * len(inc.keys))})"
        args.extend(inc.keys)
    column, wanted = found_type
    if wanted:
        sql += f" AND {column} = ?"
        args.append(wanted)
    sql += _visible_clause(access, wanted, args)
    sql += " LIMIT ?"
    args.append(limit + 1)
    return conn.execute(sql, args).fetchall()


def run_scan(
    conn: sqlite3.Connection, query: SearchQuery, after: int, limit: int, max_bytes: int
) -> ScanPage:
    """``Store.scan``: rows are read one at a time, so bodies past the byte budget are never loaded."""
    c = _Compiler(query.access, correlated=True)
    match = _match(c, query)
    if match.source == "resource r":
        sql = f"SELECT {_COLUMNS} FROM resource r WHERE {match.where} AND r.rid > ? ORDER BY r.rid LIMIT ?"
    else:
        inner = f"{match.select(f'{match.rid} > ?')} ORDER BY rid LIMIT ?"
        sql = f"SELECT {_COLUMNS} FROM ({inner}) p JOIN resource r ON r.rid = p.rid ORDER BY r.rid"
    out: list[StoredResource] = []
    size = 0
    last = None
    sets = c.member_sets
    conn.create_function(
        "termtem_member", 2, lambda index, value: value in sets[index], deterministic=True
    )
    cursor = conn.execute(sql, [*c.args, after, limit])
    try:
        for row in cursor:
            out.append(_stored(row))
            last = row[0]
            size += len(row[6])
            if size >= max_bytes:
                return ScanPage(out, last)
    finally:
        cursor.close()
    return ScanPage(out, last if len(out) == limit else None)
