"""The search-index rows of an AuditEvent, read straight from the fields ``audit`` puts in it.

Every request writes an AuditEvent, and the generic extractor (``search.extract``) walks each of the
type's ~22 search parameters through compiled paths to find its values: most of the audit's CPU. The
server builds these events itself, so where each indexed value sits is known. This module reads those
fields directly and makes the same rows the generic extractor makes (string normalisation, reference
splitting and the rare shapes go through the extractor's own helpers, so the two cannot drift).

Only while the active AuditEvent search parameters are exactly the ones known here: a custom
SearchParameter on AuditEvent (posted at runtime, in any process), or a core one this table does not
know, switches every event back to the generic extractor (``_plan`` is rebuilt whenever the registry
changes, as the extractor's own compiled accessors are).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhir_server.search import extract, registry
from fhir_server.search.model import IndexRows, SearchParam
from fhir_server.search.paths import reference_type
from fhir_server.search.values import date_range

AUDIT_EVENT = "AuditEvent"


class _Param:
    """One active parameter with its row keys worked out once (the generic path hashes them per row)."""

    __slots__ = ("identifier", "key", "param", "text")

    def __init__(self, param: SearchParam) -> None:
        self.param = param
        self.key = param.key
        self.text = param.sub_key(":text")
        self.identifier = param.sub_key(":identifier")


def _each(value: Any) -> list[Any]:
    """The items of an element as the generic paths see them (a list flattened, nulls dropped)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [v for v in value if v is not None]
    return [value]


class _Event:
    """The event with its agents and entities picked out once (every parameter starts from them)."""

    __slots__ = ("agents", "entities", "event")

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        self.agents = [a for a in _each(event.get("agent")) if isinstance(a, dict)]
        self.entities = [e for e in _each(event.get("entity")) if isinstance(e, dict)]

    def top(self, name: str) -> list[Any]:
        value = self.event.get(name)
        if value is None:
            return []
        return [value] if not isinstance(value, list) else [v for v in value if v is not None]

    @staticmethod
    def children(parents: list[Any], name: str) -> list[Any]:
        """``parents.name`` values (``agent.who``, ``entity.what``...)."""
        out: list[Any] = []
        for parent in parents:
            value = parent.get(name) if isinstance(parent, dict) else None
            if value is None:
                continue
            if isinstance(value, list):
                out.extend(v for v in value if v is not None)
            else:
                out.append(value)
        return out


def _generic(rows: IndexRows, p: _Param, values: list[Any], fhir_type: str, e: _Event) -> None:
    """Values of a shape the fast paths below do not take: the generic emitters decide."""
    if values:
        extract.emit_found(rows, p.param, [(v, fhir_type) for v in values], e.event)


def _string(rows: IndexRows, p: _Param, values: list[Any], e: _Event) -> None:
    for value in values:
        if isinstance(value, str):
            rows.string.append((p.key, extract.indexed_text(value), value[:512], 0))
        else:
            _generic(rows, p, [value], "string", e)


def _code(rows: IndexRows, p: _Param, values: list[Any], fhir_type: str, e: _Event) -> None:
    for value in values:
        if isinstance(value, str):
            rows.token.append((p.key, None, value, 0))
        else:
            _generic(rows, p, [value], fhir_type, e)


def _coding(rows: IndexRows, p: _Param, values: list[Any], e: _Event) -> None:
    for value in values:
        if not isinstance(value, dict):
            _generic(rows, p, [value], "Coding", e)
            continue
        system, code = value.get("system"), value.get("code")
        if code or system:
            rows.token.append((p.key, system, code, 0))
        display = value.get("display")
        if isinstance(display, str):
            rows.string.append((p.text, extract.indexed_text(display), display[:512], 0))


def _reference(rows: IndexRows, p: _Param, values: list[Any], e: _Event) -> None:
    for value in values:
        ref = value.get("reference") if isinstance(value, dict) else None
        if not isinstance(value, dict) or (isinstance(ref, str) and ref.startswith("#")):
            _generic(rows, p, [value], "Reference", e)  # canonical strings, contained targets
            continue
        if isinstance(ref, str) and ref:
            target, id_, version = extract.split_reference(ref)
            absolute = ref if "://" in ref or ref.startswith("urn:") else None
            rows.reference.append((p.key, target, id_, version, absolute, 0))
        ident = value.get("identifier")
        if isinstance(ident, dict) and (ident.get("value") or ident.get("system")):
            rows.token.append((p.identifier, ident.get("system"), ident.get("value"), 0))


# --- one filler per parameter -------------------------------------------------------------------

_Fill = Callable[[_Event, IndexRows, _Param], None]


def _action(e: _Event, rows: IndexRows, p: _Param) -> None:
    _code(rows, p, e.top("action"), "code", e)


def _address(e: _Event, rows: IndexRows, p: _Param) -> None:
    _string(rows, p, e.children(e.children(e.agents, "network"), "address"), e)


def _agent(e: _Event, rows: IndexRows, p: _Param) -> None:
    _reference(rows, p, e.children(e.agents, "who"), e)


def _agent_name(e: _Event, rows: IndexRows, p: _Param) -> None:
    _string(rows, p, e.children(e.agents, "name"), e)


def _agent_role(e: _Event, rows: IndexRows, p: _Param) -> None:
    _generic(rows, p, e.children(e.agents, "role"), "CodeableConcept", e)  # never set by ``audit``


def _altid(e: _Event, rows: IndexRows, p: _Param) -> None:
    _code(rows, p, e.children(e.agents, "altId"), "string", e)


_INSTANT = re.compile(r"(\d{4}-\d{2}-\d{2})T([01]\d|2[0-3]):([0-5]\d):([0-5]\d)\.(\d{3})Z")
_day_starts: dict[str, int | None] = {}


def _instant_bounds(value: str) -> tuple[int, int] | None:
    """``date_range`` of an instant; the server's own UTC millisecond form (``writes.now_instant``)
    from a per-day start and the time of day, without the general parser."""
    match = _INSTANT.fullmatch(value)
    if match is None:
        return date_range(value)
    day = match[1]
    start = _day_starts.get(day, -1)
    if start == -1:
        bounds = date_range(day)
        start = bounds[0] if bounds else None
        if len(_day_starts) > 64:
            _day_starts.clear()
        _day_starts[day] = start
    if start is None:
        return None  # no such day (a 30th of February)
    ms = start + ((int(match[2]) * 60 + int(match[3])) * 60 + int(match[4])) * 1000 + int(match[5])
    return ms, ms


def _date(e: _Event, rows: IndexRows, p: _Param) -> None:
    for value in e.top("recorded"):
        if isinstance(value, str):
            bounds = _instant_bounds(value)
            if bounds:
                rows.date.append((p.key, bounds[0], bounds[1], 0))
        else:
            _generic(rows, p, [value], "instant", e)


def _entity(e: _Event, rows: IndexRows, p: _Param) -> None:
    _reference(rows, p, e.children(e.entities, "what"), e)


def _entity_name(e: _Event, rows: IndexRows, p: _Param) -> None:
    _string(rows, p, e.children(e.entities, "name"), e)


def _entity_role(e: _Event, rows: IndexRows, p: _Param) -> None:
    _coding(rows, p, e.children(e.entities, "role"), e)


def _entity_type(e: _Event, rows: IndexRows, p: _Param) -> None:
    _coding(rows, p, e.children(e.entities, "type"), e)


def _outcome(e: _Event, rows: IndexRows, p: _Param) -> None:
    _code(rows, p, e.top("outcome"), "code", e)


def _patient(e: _Event, rows: IndexRows, p: _Param) -> None:
    found = [*e.children(e.agents, "who"), *e.children(e.entities, "what")]
    _reference(rows, p, [v for v in found if reference_type(v, e.event) == "Patient"], e)


def _policy(e: _Event, rows: IndexRows, p: _Param) -> None:
    _generic(rows, p, e.children(e.agents, "policy"), "uri", e)  # never set by ``audit``


def _site(e: _Event, rows: IndexRows, p: _Param) -> None:
    _code(rows, p, e.children(e.top("source"), "site"), "string", e)


def _source(e: _Event, rows: IndexRows, p: _Param) -> None:
    _reference(rows, p, e.children(e.top("source"), "observer"), e)


def _subtype(e: _Event, rows: IndexRows, p: _Param) -> None:
    _coding(rows, p, e.top("subtype"), e)


def _type(e: _Event, rows: IndexRows, p: _Param) -> None:
    _coding(rows, p, e.top("type"), e)


def _meta(name: str, fhir_type: str) -> _Fill:
    def fill(e: _Event, rows: IndexRows, p: _Param) -> None:
        meta = e.event.get("meta")
        if isinstance(meta, dict) and meta.get(name) is not None:  # ``audit`` sets no tags or profiles
            _generic(rows, p, e.children([meta], name), fhir_type, e)

    return fill


_KNOWN: dict[str, tuple[str, str, _Fill]] = {
    "action": ("token", "AuditEvent.action", _action),
    "address": ("string", "AuditEvent.agent.network.address", _address),
    "agent": ("reference", "AuditEvent.agent.who", _agent),
    "agent-name": ("string", "AuditEvent.agent.name", _agent_name),
    "agent-role": ("token", "AuditEvent.agent.role", _agent_role),
    "altid": ("token", "AuditEvent.agent.altId", _altid),
    "date": ("date", "AuditEvent.recorded", _date),
    "entity": ("reference", "AuditEvent.entity.what", _entity),
    "entity-name": ("string", "AuditEvent.entity.name", _entity_name),
    "entity-role": ("token", "AuditEvent.entity.role", _entity_role),
    "entity-type": ("token", "AuditEvent.entity.type", _entity_type),
    "outcome": ("token", "AuditEvent.outcome", _outcome),
    "patient": (
        "reference",
        "AuditEvent.agent.who.where(resolve() is Patient)"
        " | AuditEvent.entity.what.where(resolve() is Patient)",
        _patient,
    ),
    "policy": ("uri", "AuditEvent.agent.policy", _policy),
    "site": ("token", "AuditEvent.source.site", _site),
    "source": ("reference", "AuditEvent.source.observer", _source),
    "subtype": ("token", "AuditEvent.subtype", _subtype),
    "type": ("token", "AuditEvent.type", _type),
    "_profile": ("uri", "Resource.meta.profile", _meta("profile", "canonical")),
    "_security": ("token", "Resource.meta.security", _meta("security", "Coding")),
    "_source": ("uri", "Resource.meta.source", _meta("source", "uri")),
    "_tag": ("token", "Resource.meta.tag", _meta("tag", "Coding")),
}

_plan_cache: tuple[int, list[tuple[_Fill, _Param]] | None] | None = None


def _plan() -> list[tuple[_Fill, _Param]] | None:
    """The fillers, in the registry's parameter order, or None when any active parameter is unknown."""
    global _plan_cache
    generation = extract.generation()
    if _plan_cache is not None and _plan_cache[0] == generation:
        return _plan_cache[1]
    plan: list[tuple[_Fill, _Param]] | None = []
    for param in registry.parameters_for(AUDIT_EVENT).values():
        if param.code in extract.TABLE_PARAMETERS:
            continue
        known = _KNOWN.get(param.code)
        if known is None or (known[0], known[1]) != (param.type, param.expression) or param.custom:
            plan = None
            break
        assert plan is not None
        plan.append((known[2], _Param(param)))
    _plan_cache = (generation, plan)
    return plan


def uses_direct_rows() -> bool:
    """Whether AuditEvents are indexed here (False: a parameter this module does not know is active)."""
    return _plan() is not None


def audit_index_rows(event: dict[str, Any]) -> IndexRows:
    """The index rows of an AuditEvent the server built (``extract.extract_index`` gives the same)."""
    plan = _plan()
    if plan is None:
        return extract.extract_index(event)
    rows = IndexRows()
    found = _Event(event)
    for fill, param in plan:
        fill(found, rows, param)
    return extract.without_repeats(rows)
