"""Index extraction: the values of every search parameter of a resource, as ``IndexRows``.

Runs on the write path (inside the same atomic write as the resource), so it is built for speed:
each type's parameters are compiled once into accessors (``paths``) and value emitters per type.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from fhir_server.search import paths, registry
from fhir_server.search.model import IndexRows, SearchParam
from fhir_server.search.thai_address import address_variants
from fhir_server.search.values import MAX_MS, MIN_MS, canonical_unit, date_range, normalize

Item = paths.Item
_MONEY_SYSTEM = "urn:iso:std:iso:4217"


# --- per-type emitters -----------------------------------------------------------------------------


def _kind(value: Any, fhir_type: str | None) -> str | None:
    return fhir_type if fhir_type is not None else paths.guess_type(value)


def _strings(value: Any, fhir_type: str | None) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    kind = _kind(value, fhir_type)
    out: list[str] = []
    if kind == "HumanName":
        for key in ("family", "text"):
            if isinstance(value.get(key), str):
                out.append(value[key])
        for key in ("given", "prefix", "suffix"):
            out.extend(x for x in value.get(key, []) or [] if isinstance(x, str))
    elif kind == "Address":
        out.extend(x for x in value.get("line", []) or [] if isinstance(x, str))
        for key in ("city", "district", "state", "postalCode", "country", "text"):
            if isinstance(value.get(key), str):
                out.append(value[key])
        out.extend(address_variants(value))
        out = list(dict.fromkeys(out))
    elif kind == "CodeableConcept":
        if isinstance(value.get("text"), str):
            out.append(value["text"])
        out.extend(c["display"] for c in value.get("coding", []) or [] if isinstance(c.get("display"), str))
    elif kind == "Coding" and isinstance(value.get("display"), str):
        out.append(value["display"])
    elif kind in ("Annotation", "Narrative") and isinstance(value.get("text"), str):
        out.append(value["text"])
    elif kind == "Identifier" and isinstance(value.get("value"), str):
        out.append(value["value"])
    elif kind == "Attachment" and isinstance(value.get("title"), str):
        out.append(value["title"])
    return out


def _indexed(text: str) -> str:
    """The normalised form stored for string search: only 512 characters are kept, so only a prefix
    is normalised (a string of megabytes would otherwise be decomposed whole)."""
    return normalize(text[:2048])[:512]


def _emit_string(rows: IndexRows, key: int, value: Any, fhir_type: str | None, grp: int) -> None:
    for s in _strings(value, fhir_type):
        rows.string.append((key, _indexed(s), s[:512], grp))


def _token_rows(
    rows: IndexRows, p: SearchParam, key: int, value: Any, fhir_type: str | None, grp: int
) -> None:
    if isinstance(value, bool):
        rows.token.append((key, None, "true" if value else "false", grp))
        return
    if isinstance(value, str | int | float):
        rows.token.append((key, None, str(value), grp))
        return
    if not isinstance(value, dict):
        return
    kind = _kind(value, fhir_type)
    text_key = p.sub_key(":text")
    if kind == "CodeableConcept":
        for c in value.get("coding", []) or []:
            if isinstance(c, dict) and (c.get("code") or c.get("system")):
                rows.token.append((key, c.get("system"), c.get("code"), grp))
        if grp == 0:
            for s in _strings(value, "CodeableConcept"):
                rows.string.append((text_key, _indexed(s), s[:512], 0))
    elif kind == "Coding":
        if value.get("code") or value.get("system"):
            rows.token.append((key, value.get("system"), value.get("code"), grp))
        if grp == 0 and isinstance(value.get("display"), str):
            rows.string.append((text_key, _indexed(value["display"]), value["display"][:512], 0))
    elif kind == "Identifier":
        ident = value.get("value")
        if ident is None and not value.get("system"):
            return
        rows.token.append((key, value.get("system"), ident, grp))
        if grp == 0:
            itype = value.get("type") or {}
            for c in itype.get("coding", []) or []:
                if c.get("code") and ident is not None:
                    rows.token.append((p.sub_key(":of-type"), c.get("system"), f"{c['code']}|{ident}", 0))
            if isinstance(itype.get("text"), str):
                rows.string.append((text_key, _indexed(itype["text"]), itype["text"][:512], 0))
    elif kind == "ContactPoint":
        if value.get("value") is not None:
            rows.token.append((key, value.get("system"), str(value["value"]), grp))
    elif kind in ("Quantity", "Age", "Duration", "Money"):
        if value.get("code") or value.get("unit"):
            rows.token.append((key, value.get("system"), value.get("code") or value.get("unit"), grp))
    elif kind == "Reference" and isinstance(value.get("identifier"), dict):
        _token_rows(rows, p, key, value["identifier"], "Identifier", grp)


def _split_reference(text: str) -> tuple[str | None, str | None, str | None]:
    """(type, id, version) of a relative or absolute RESTful reference."""
    parts = text.split("/")
    version = None
    if len(parts) >= 4 and parts[-2] == "_history":
        version = parts[-1]
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalnum():
        return parts[-2], parts[-1], version
    return None, None, None


def _emit_reference(
    rows: IndexRows,
    p: SearchParam,
    key: int,
    value: Any,
    fhir_type: str | None,
    grp: int,
    root: dict[str, Any],
) -> None:
    if isinstance(value, str):  # canonical or uri
        url, _, version = value.partition("|")
        ttype, tid, _ = _split_reference(url)
        rows.reference.append((key, ttype, tid, version or None, url, grp))
        return
    if not isinstance(value, dict):
        return
    ref = value.get("reference")
    if isinstance(ref, str) and ref:
        if ref.startswith("#"):
            for contained in root.get("contained", []) or []:
                if contained.get("id") == ref[1:]:
                    rows.reference.append((key, contained.get("resourceType"), ref, None, None, grp))
            return
        ttype, tid, version = _split_reference(ref)
        absolute = ref if "://" in ref or ref.startswith("urn:") else None
        rows.reference.append((key, ttype, tid, version, absolute, grp))
    ident = value.get("identifier")
    if isinstance(ident, dict) and grp == 0 and (ident.get("value") or ident.get("system")):
        rows.token.append((p.sub_key(":identifier"), ident.get("system"), ident.get("value"), 0))


def _date_bounds(value: Any, fhir_type: str | None) -> list[tuple[int, int]]:
    if isinstance(value, str):
        r = date_range(value)
        return [r] if r else []
    if not isinstance(value, dict):
        return []
    kind = _kind(value, fhir_type)
    if kind == "Period":
        start = date_range(value["start"]) if isinstance(value.get("start"), str) else None
        end = date_range(value["end"]) if isinstance(value.get("end"), str) else None
        if start is None and end is None:
            return []
        return [(start[0] if start else MIN_MS, end[1] if end else MAX_MS)]
    if kind == "Timing":
        out = [r for e in value.get("event", []) or [] if isinstance(e, str) and (r := date_range(e))]
        bounds = (value.get("repeat") or {}).get("boundsPeriod")
        if isinstance(bounds, dict):
            out.extend(_date_bounds(bounds, "Period"))
        return out
    return []


def _emit_date(rows: IndexRows, key: int, value: Any, fhir_type: str | None, grp: int) -> None:
    for lo, hi in _date_bounds(value, fhir_type):
        rows.date.append((key, lo, hi, grp))


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        try:
            return float(v) if isinstance(v, str) else None
        except ValueError:
            return None
    return float(v)


def _emit_number(rows: IndexRows, key: int, value: Any, fhir_type: str | None, grp: int) -> None:
    n = _num(value)
    if n is not None or (
        isinstance(value, dict) and "value" in value and (n := _num(value["value"])) is not None
    ):
        rows.number.append((key, n, n, grp))


def _quantity_row(
    key: int, q: dict[str, Any], lo: float, hi: float, grp: int, kind: str | None
) -> tuple[Any, ...]:
    system, code = q.get("system"), q.get("code")
    if kind == "Money":
        system, code = _MONEY_SYSTEM, q.get("currency")
    if code is None and q.get("unit"):
        code = q.get("unit")
    canon = canonical_unit(system, code)
    if canon:
        return (key, system, code, lo, hi, canon[0], lo * canon[1], hi * canon[1], grp)
    return (key, system, code, lo, hi, None, None, None, grp)


def _emit_quantity(rows: IndexRows, key: int, value: Any, fhir_type: str | None, grp: int) -> None:
    if not isinstance(value, dict):
        n = _num(value)
        if n is not None:
            rows.quantity.append((key, None, None, n, n, None, None, None, grp))
        return
    kind = _kind(value, fhir_type)
    if kind == "Range":
        low, high = value.get("low") or {}, value.get("high") or {}
        lo, hi = _num(low.get("value")), _num(high.get("value"))
        if lo is None and hi is None:
            return
        unit_source = low if lo is not None else high
        rows.quantity.append(
            _quantity_row(
                key,
                unit_source,
                lo if lo is not None else float("-inf"),
                hi if hi is not None else float("inf"),
                grp,
                "Quantity",
            )
        )
        return
    n = _num(value.get("value"))
    if n is not None:
        rows.quantity.append(_quantity_row(key, value, n, n, grp, kind))


def _emit_uri(rows: IndexRows, key: int, value: Any, grp: int) -> None:
    if isinstance(value, str):
        rows.uri.append((key, value, grp))


# --- compiled per type -----------------------------------------------------------------------------

Extractor = Callable[[dict[str, Any], IndexRows, list[int]], None]


def _emit(
    rows: IndexRows, p: SearchParam, key: int, items: list[Item], grp: int, root: dict[str, Any]
) -> None:
    t = p.type
    for value, fhir_type in items:
        if t == "token":
            _token_rows(rows, p, key, value, fhir_type, grp)
        elif t == "string":
            _emit_string(rows, key, value, fhir_type, grp)
        elif t == "reference":
            _emit_reference(rows, p, key, value, fhir_type, grp, root)
        elif t == "date":
            _emit_date(rows, key, value, fhir_type, grp)
        elif t == "number":
            _emit_number(rows, key, value, fhir_type, grp)
        elif t == "quantity":
            _emit_quantity(rows, key, value, fhir_type, grp)
        elif t == "uri":
            _emit_uri(rows, key, value, grp)


def _simple_extractor(p: SearchParam) -> Extractor:
    accessor = paths.compile_expression(p.resource_type, p.expression)
    key = p.key

    def run(resource: dict[str, Any], rows: IndexRows, counter: list[int]) -> None:
        items = accessor(resource, [(resource, p.resource_type)])
        if items:
            _emit(rows, p, key, items, 0, resource)

    return run


def _composite_extractor(p: SearchParam) -> Extractor | None:
    subs = [registry.component_param(p.resource_type, comp) for comp in p.components]
    if not subs or any(
        s is None or s.type not in registry.SUPPORTED_TYPES or s.type == "composite" for s in subs
    ):
        return None
    branches = []  # one per union alternative, each with the element context its components start at
    for alt in paths.split_union(p.expression):
        ctx = paths.context_of(p.resource_type, alt)
        parts = [
            (sub, p.sub_key(f"#{i}"), paths.compile_relative(ctx, comp.expression))
            for i, (sub, comp) in enumerate(zip(subs, p.components, strict=True))
            if sub is not None
        ]
        branches.append((paths.compile_expression(p.resource_type, alt), parts))

    def run(resource: dict[str, Any], rows: IndexRows, counter: list[int]) -> None:
        for accessor, parts in branches:
            for item in accessor(resource, [(resource, p.resource_type)]):
                found = [(sub, key, acc(resource, [item])) for sub, key, acc in parts]
                if not all(values for _, _, values in found):
                    continue
                counter[0] += 1
                for sub, key, values in found:
                    _emit(rows, sub, key, values, counter[0], resource)

    return run


# Served from the resource table itself: no index rows.
TABLE_PARAMETERS = frozenset({"_id", "_lastUpdated"})


@cache
def _extractors(resource_type: str) -> list[Extractor]:
    out: list[Extractor] = []
    for p in registry.parameters_for(resource_type).values():
        if p.code in TABLE_PARAMETERS:
            continue
        if p.type == "composite":
            ext = _composite_extractor(p)
            if ext is not None:
                out.append(ext)
        else:
            out.append(_simple_extractor(p))
    return out


_generation = 0


def clear_cache() -> None:
    """Forget compiled extractors (after custom parameters change)."""
    global _generation
    _extractors.cache_clear()
    _generation += 1


def generation() -> int:
    """Moves whenever the active parameters change: for extractors that compile their own plans."""
    return _generation


def _unique(values: list[Any]) -> list[Any]:
    """``values`` without repeats, in order; in slices, as one C call over millions would hold the GIL."""
    if len(values) <= _SLICE:
        return list(dict.fromkeys(values))
    seen: dict[Any, None] = {}
    for start in range(0, len(values), _SLICE):
        seen.update(dict.fromkeys(values[start : start + _SLICE]))
    return list(seen)


_SLICE = 50_000


def extract_index(resource: dict[str, Any]) -> IndexRows:
    """All index rows for one resource (parsed JSON with ``resourceType``)."""
    rows = IndexRows()
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return rows
    counter = [0]
    for extractor in _extractors(rtype):
        extractor(resource, rows, counter)
    return without_repeats(rows)


def without_repeats(rows: IndexRows) -> IndexRows:
    """``rows`` with each row kept once (in first-seen order)."""
    for name in ("string", "token", "reference", "date", "number", "quantity", "uri"):
        values = getattr(rows, name)
        if len(values) > 1:
            setattr(rows, name, _unique(values))
    return rows


def emit_found(rows: IndexRows, p: SearchParam, items: list[Item], root: dict[str, Any]) -> None:
    """The rows of ``p`` for values found without its path (``(value, FHIR type)`` items): for
    extractors that know where a resource's values are (``security.audit_index``)."""
    _emit(rows, p, p.key, items, 0, root)


# The row makers, for extractors that know a resource's shape: the same text and references as here.
indexed_text = _indexed
split_reference = _split_reference
