"""The terminology operations as plain functions returning FHIR resources (no HTTP).

Each function mirrors one FHIR operation ($lookup, $validate-code, $expand, $translate, $subsumes)
and raises ``FhirError`` for requests it cannot answer, so the HTTP layer, the CLI and tests share it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from fhir_server.interactions.errors import FhirError
from fhir_server.terminology._codesystem import CodeSystemIndex, Concept
from fhir_server.terminology._expand import Entry, expansion_of
from fhir_server.terminology._registry import registry
from fhir_server.terminology._text import filter_terms, matches

MAX_EXPANSION = 5_000  # concepts returned by one $expand without count
_INVERSE = {"wider": "narrower", "narrower": "wider", "subsumes": "specializes", "specializes": "subsumes"}
_NO_MATCH = ("unmatched", "disjoint")


def _param_expr(name: str) -> list[str]:
    return [f"Parameters.parameter.where(name = '{name}')"]


def _parameters(*params: dict[str, Any] | None) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [p for p in params if p]}


def _value(name: str, kind: str, value: Any) -> dict[str, Any] | None:
    return None if value is None else {"name": name, f"value{kind}": value}


def _code_system(
    system: str | None, code_system: dict[str, Any] | None, version: str | None, param: str
) -> CodeSystemIndex:
    """The index for ``code_system`` (a resource) or the system URL; 404 when we do not hold it."""
    if code_system is not None:
        known = registry().code_system(code_system.get("url", "")) if code_system.get("url") else None
        if known is not None and known.resource.get("concept") == code_system.get("concept"):
            return known
        if "url" not in code_system:
            code_system = {**code_system, "url": f"urn:uuid:{code_system.get('id', uuid.uuid4())}"}
        return CodeSystemIndex(code_system)
    if not system:
        raise FhirError(400, f"Parameter '{param}' is required", expression=_param_expr(param))
    cs = registry().code_system(system)
    if cs is None:
        raise FhirError(
            404,
            f"Code system '{system}' is not known to this server",
            code="not-found",
            expression=_param_expr(param),
        )
    if version and cs.version and version != cs.version:
        raise FhirError(
            404,
            f"Code system '{system}' version '{version}' is not known (this server has '{cs.version}')",
            code="not-found",
            expression=_param_expr("version"),
        )
    return cs


# -- $lookup ------------------------------------------------------------------------------------------


def lookup(
    system: str | None,
    code: str | None,
    version: str | None = None,
    properties: list[str] | None = None,
    display_language: str | None = None,
    *,
    code_system: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """CodeSystem/$lookup: name, version, display (in ``display_language``), designations, properties."""
    cs = _code_system(system, code_system, version, "system")
    if not code:
        raise FhirError(400, "Parameter 'code' is required", expression=_param_expr("code"))
    concept = cs.get(code)
    if concept is None:
        raise FhirError(
            404,
            f"Code '{code}' is not in code system '{cs.url}'",
            code="not-found",
            expression=_param_expr("code"),
        )
    out = _parameters(
        _value("name", "String", cs.name),
        _value("version", "String", cs.version),
        _value("display", "String", cs.display(concept, display_language)),
        _value("definition", "String", concept.definition),
    )
    for designation in cs.all_designations(concept):
        parts = [
            _value("language", "Code", designation.get("language")),
            _value("use", "Coding", designation.get("use")),
            _value("value", "String", designation.get("value")),
        ]
        out["parameter"].append({"name": "designation", "part": [p for p in parts if p]})
    out["parameter"].extend(_lookup_properties(cs, concept, properties))
    return out


def _lookup_properties(
    cs: CodeSystemIndex, concept: Concept, wanted: list[str] | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    names = ["parent", "child"] + [p["code"] for p in concept.properties if p.get("code")]
    seen: set[str] = set()
    for name in names:
        if name in seen or (wanted and name not in wanted):
            continue
        seen.add(name)
        for prop in concept.properties if name not in ("parent", "child") else []:
            if prop.get("code") != name:
                continue
            value = next(((k, v) for k, v in prop.items() if k.startswith("value")), None)
            if value:
                out.append(
                    {
                        "name": "property",
                        "part": [{"name": "code", "valueCode": name}, {"name": "value", value[0]: value[1]}],
                    }
                )
        if name in ("parent", "child"):
            for related in cs.property_values(concept, name):
                out.append(
                    {
                        "name": "property",
                        "part": [
                            {"name": "code", "valueCode": name},
                            {"name": "value", "valueCode": related},
                        ],
                    }
                )
    return out


# -- $validate-code -----------------------------------------------------------------------------------


def _codings(
    code: str | None,
    system: str | None,
    display: str | None,
    coding: dict[str, Any] | None,
    codeable_concept: dict[str, Any] | None,
) -> list[tuple[dict[str, Any], str]]:
    """The codings to check, each with the parameter name it came from (for messages)."""
    if codeable_concept is not None:
        codings = codeable_concept.get("coding") or []
        if not codings:
            raise FhirError(400, "codeableConcept has no coding", expression=_param_expr("codeableConcept"))
        return [(c, "codeableConcept") for c in codings]
    if coding is not None:
        return [(coding, "coding")]
    if not code:
        raise FhirError(
            400, "One of code, coding or codeableConcept is required", expression=_param_expr("code")
        )
    return [({"system": system, "code": code, "display": display}, "code")]


def _result(ok: bool, message: str | None, display: str | None, coding: dict[str, Any]) -> dict[str, Any]:
    return _parameters(
        _value("result", "Boolean", ok),
        _value("message", "String", message),
        _value("display", "String", display),
        _value("code", "Code", coding.get("code")),
        _value("system", "Uri", coding.get("system")),
    )


def _check_in_code_system(
    cs: CodeSystemIndex, coding: dict[str, Any], language: str | None
) -> tuple[bool, str | None, str | None]:
    concept = cs.get(coding.get("code") or "")
    if concept is None:
        return False, f"Unknown code '{coding.get('code')}' in code system '{cs.url}'", None
    shown = cs.display(concept, language)
    wanted = coding.get("display")
    if wanted and not cs.display_is_valid(concept, wanted):
        return (
            False,
            f"Display '{wanted}' is not a valid display for code '{concept.code}' (expected '{shown}')",
            shown,
        )
    return True, None, shown


def _check_in_value_set(
    expansion_index: dict[tuple[str, str], Entry], vs_url: str, coding: dict[str, Any], language: str | None
) -> tuple[bool, str | None, str | None]:
    code, system = coding.get("code") or "", coding.get("system")
    if system:
        entry = expansion_index.get((system, code))
        if entry is None:
            cs = registry().code_system(system)
            if cs is not None and cs.get(code) is not None and not cs.case_sensitive:
                entry = expansion_index.get((system, cs.get(code).code))  # type: ignore[union-attr]
    else:
        found = [e for (s, c), e in expansion_index.items() if c == code]
        entry = found[0] if len(found) == 1 else None
    if entry is None:
        if (
            system
            and registry().code_system(system) is None
            and not any(s == system for s, _ in expansion_index)
        ):
            return (
                False,
                f"Unknown code system '{system}'; code '{code}' is not in value set '{vs_url}'",
                None,
            )
        if system and (cs := registry().code_system(system)) is not None and cs.get(code) is None:
            return False, f"Unknown code '{code}' in code system '{system}'", None
        where = f"'{system}#{code}'" if system else f"'{code}' (no system given)"
        return False, f"Code {where} is not in value set '{vs_url}'", None
    shown = entry.display_in(language)
    wanted = coding.get("display")
    if wanted:
        valid = {d.get("value", "").casefold().strip() for d in entry.designations}
        cs = registry().code_system(entry.system)
        concept = cs.get(entry.code) if cs else None
        if wanted.casefold().strip() not in valid and not (
            cs and concept and cs.display_is_valid(concept, wanted)
        ):
            return (
                False,
                f"Display '{wanted}' is not a valid display for code '{entry.code}' (expected '{shown}')",
                shown,
            )
    if entry.abstract:
        return False, f"Code '{entry.code}' is abstract and cannot be used", shown
    return True, None, shown


def validate_code(
    url: str | None = None,
    code: str | None = None,
    system: str | None = None,
    display: str | None = None,
    coding: dict[str, Any] | None = None,
    codeable_concept: dict[str, Any] | None = None,
    *,
    kind: Literal["ValueSet", "CodeSystem"] = "ValueSet",
    value_set: dict[str, Any] | None = None,
    code_system: dict[str, Any] | None = None,
    version: str | None = None,
    display_language: str | None = None,
) -> dict[str, Any]:
    """$validate-code against a value set (``kind="ValueSet"``) or a code system; unknown codes give false."""
    checks = _codings(code, system, display, coding, codeable_concept)
    failures: list[str] = []
    first_display: str | None = None
    for candidate, _ in checks:
        if kind == "CodeSystem":
            target = url or candidate.get("system")
            if code_system is None and target and registry().code_system(target) is None:
                failures.append(f"Unknown code system '{target}'")
                continue
            cs = _code_system(target, code_system, version, "url")
            if candidate.get("system") and candidate["system"] != cs.url:
                failures.append(f"Coding system '{candidate['system']}' is not the code system '{cs.url}'")
                continue
            ok, message, shown = _check_in_code_system(cs, candidate, display_language)
        else:
            try:
                expansion = expansion_of(value_set, url)
            except FhirError as exc:
                if exc.status == 404:
                    raise
                return _result(
                    False, f"Cannot validate against this value set: {exc.diagnostics}", None, candidate
                )
            vs_url = (value_set or {}).get("url") or url or "(inline)"
            ok, message, shown = _check_in_value_set(expansion.index, vs_url, candidate, display_language)
        if ok:
            return _result(True, None, shown, candidate)
        first_display = first_display or shown
        failures.append(message or "invalid")
    return _result(False, "; ".join(failures), first_display, checks[0][0])


# -- $expand ------------------------------------------------------------------------------------------


def expand(
    url: str | None = None,
    value_set: dict[str, Any] | None = None,
    filter: str | None = None,
    count: int | None = None,
    offset: int | None = None,
    include_designations: bool = False,
    display_language: str | None = None,
) -> dict[str, Any]:
    """ValueSet/$expand with a Thai/English text ``filter`` and ``count``/``offset`` paging."""
    if count is not None and count < 0:
        raise FhirError(400, "count must not be negative", expression=_param_expr("count"))
    if offset is not None and offset < 0:
        raise FhirError(400, "offset must not be negative", expression=_param_expr("offset"))
    source = value_set if value_set is not None else (registry().value_set(url) if url else None)
    if source is None:
        if not url:
            raise FhirError(400, "Parameter 'url' or 'valueSet' is required", expression=_param_expr("url"))
        raise FhirError(
            404,
            f"ValueSet '{url}' is not known to this server",
            code="not-found",
            expression=_param_expr("url"),
        )
    entries: tuple[Entry, ...] | list[Entry] = expansion_of(
        source if value_set is not None else None, url if value_set is None else None
    ).entries
    if filter:
        terms = filter_terms(filter)
        entries = [e for e in entries if matches(terms, e.search_text)]
    total = len(entries)
    start = offset or 0
    if count is None and total - start > MAX_EXPANSION:
        raise FhirError(
            422,
            f"ValueSet '{source.get('url')}' has {total} matching concepts, more than the {MAX_EXPANSION} "
            "this server returns at once: narrow it with 'filter' or page it with 'count' and 'offset'",
            code="too-costly",
        )
    page = entries[start : start + min(count, MAX_EXPANSION)] if count is not None else entries[start:]
    parameters = [
        p
        for p in (
            _value("filter", "String", filter),
            _value("count", "Integer", count),
            _value("offset", "Integer", offset),
            _value("includeDesignations", "Boolean", include_designations or None),
            _value("displayLanguage", "Code", display_language),
        )
        if p
    ]
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "total": total,
        "offset": start,
    }
    if parameters:
        expansion["parameter"] = parameters
    expansion["contains"] = [_contains(e, include_designations, display_language) for e in page]
    out = {k: v for k, v in source.items() if k not in ("text", "expansion")}
    out["expansion"] = expansion
    return out


def _contains(entry: Entry, designations: bool, language: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"system": entry.system}
    if entry.version:
        item["version"] = entry.version
    if entry.abstract:
        item["abstract"] = True
    if entry.inactive:
        item["inactive"] = True
    item["code"] = entry.code
    shown = entry.display_in(language)
    if shown:
        item["display"] = shown
    if designations and entry.designations:
        item["designation"] = [dict(d) for d in entry.designations]
    return item


def expand_codes(value_set_url: str) -> frozenset[tuple[str, str]]:
    """Every (system, code) in a value set, cached: what ``:in``/``:not-in`` searches compare against."""
    return expansion_of(None, value_set_url).keys


# -- $translate ---------------------------------------------------------------------------------------


def translate(
    url: str | None = None,
    concept_map: dict[str, Any] | None = None,
    system: str | None = None,
    code: str | None = None,
    target_system: str | None = None,
    reverse: bool = False,
    *,
    coding: dict[str, Any] | None = None,
    source: str | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    """ConceptMap/$translate, forwards or (``reverse``) from target to source codes."""
    if coding is not None:
        system, code = coding.get("system"), coding.get("code")
    if not code:
        raise FhirError(400, "Parameter 'code' (or 'coding') is required", expression=_param_expr("code"))
    if not system:
        raise FhirError(400, "Parameter 'system' is required with 'code'", expression=_param_expr("system"))
    if concept_map is not None:
        maps = [concept_map]
    elif url:
        found = registry().concept_map(url)
        if found is None:
            raise FhirError(
                404,
                f"ConceptMap '{url}' is not known to this server",
                code="not-found",
                expression=_param_expr("url"),
            )
        maps = [found]
    else:
        maps = registry().concept_maps()
        if source:
            maps = [m for m in maps if (m.get("targetUri") if reverse else m.get("sourceUri")) == source]
        if target:
            maps = [m for m in maps if (m.get("sourceUri") if reverse else m.get("targetUri")) == target]
    matches_: list[dict[str, Any]] = []
    for cm in maps:
        matches_.extend(_translate_one(cm, system, code, target_system, reverse))
    found_any = any(m["equivalence"] not in _NO_MATCH for m in matches_)
    out = _parameters(
        _value("result", "Boolean", found_any),
        None if found_any else _value("message", "String", f"No mapping found for '{system}#{code}'"),
    )
    for m in matches_:
        parts = [{"name": "equivalence", "valueCode": m["equivalence"]}]
        if m.get("concept"):
            parts.append({"name": "concept", "valueCoding": m["concept"]})
        parts.append({"name": "source", "valueUri": m["source"]})
        out["parameter"].append({"name": "match", "part": parts})
    return out


def _translate_one(
    cm: dict[str, Any], system: str, code: str, target_system: str | None, reverse: bool
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for group in cm.get("group", []):
        src, tgt = group.get("source"), group.get("target")
        if reverse:
            if tgt != system or (target_system and src != target_system):
                continue
            for element in group.get("element", []):
                for t in element.get("target", []):
                    if t.get("code") == code and t.get("equivalence") not in _NO_MATCH:
                        out.append(
                            _match(
                                cm,
                                src,
                                element.get("code"),
                                element.get("display"),
                                _INVERSE.get(t["equivalence"], t["equivalence"]),
                            )
                        )
        else:
            if src != system or (target_system and tgt != target_system):
                continue
            for element in group.get("element", []):
                if element.get("code") != code:
                    continue
                for t in element.get("target", []):
                    out.append(
                        _match(cm, tgt, t.get("code"), t.get("display"), t.get("equivalence", "equivalent"))
                    )
    return out


def _match(
    cm: dict[str, Any], system: str | None, code: str | None, display: str | None, equivalence: str
) -> dict[str, Any]:
    match: dict[str, Any] = {"equivalence": equivalence, "source": cm.get("url", "")}
    if code:
        coding: dict[str, Any] = {"system": system, "code": code}
        cs = registry().code_system(system) if system else None
        concept = cs.get(code) if cs else None
        shown = display or (concept.display if concept else None)
        if shown:
            coding["display"] = shown
        match["concept"] = coding
    return match


# -- $subsumes ----------------------------------------------------------------------------------------


def subsumes(
    system: str | None,
    code_a: str | None,
    code_b: str | None,
    version: str | None = None,
    *,
    code_system: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """CodeSystem/$subsumes: how code A relates to code B in the code system's hierarchy."""
    cs = _code_system(system, code_system, version, "system")
    concepts = []
    for name, code in (("codeA", code_a), ("codeB", code_b)):
        if not code:
            raise FhirError(400, f"Parameter '{name}' is required", expression=_param_expr(name))
        concept = cs.get(code)
        if concept is None:
            raise FhirError(
                404,
                f"Code '{code}' is not in code system '{cs.url}'",
                code="not-found",
                expression=_param_expr(name),
            )
        concepts.append(concept.code)
    a, b = concepts
    if a == b:
        outcome = "equivalent"
    elif a in cs.ancestors(b):
        outcome = "subsumes"
    elif b in cs.ancestors(a):
        outcome = "subsumed-by"
    else:
        outcome = "not-subsumed"
    return _parameters({"name": "outcome", "valueCode": outcome})


def shipped_resources() -> list[dict[str, Any]]:
    """Every CodeSystem, ValueSet and ConceptMap we ship (with ids), for loading into the store.

    Fresh copies, so the caller may add ``meta`` without touching the service's own definitions.
    """
    return [orjson.loads(orjson.dumps(r)) for r in registry().shipped]


def shipped_resource(resource_type: str, id_: str) -> dict[str, Any] | None:
    """One of our shipped resources by type and id, or None."""
    return registry().by_id(resource_type, id_)


def code_system(url: str) -> dict[str, Any] | None:
    """A CodeSystem resource we hold (ours, the geothai admin areas or FHIR core) by URL, else None.

    Shared, not copied: callers must not mutate it (the validator reads it for binding checks).
    """
    cs = registry().code_system(url)
    return cs.resource if cs is not None else None
