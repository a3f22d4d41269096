"""ValueSet expansion: compose rules evaluated over the CodeSystems we hold, cached per value set.

A value set is expanded once into a flat list of entries (with pre-normalised search text), then
``$expand`` filters and pages that list, ``$validate-code`` checks membership in it and the search
engine's ``:in`` reads its (system, code) set. Value sets over code systems we do not hold (SNOMED CT,
LOINC, ...) fall back to HL7's pre-computed expansion when one exists and are refused otherwise.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_server import definitions
from fhir_server.interactions.errors import FhirError
from fhir_server.terminology._codesystem import CodeSystemIndex, Concept, _language_matches
from fhir_server.terminology._registry import registry
from fhir_server.terminology._text import normalise

MAX_COMPUTED = 100_000  # no value set we can expand in memory is larger than this
_INLINE_CACHE_SIZE = 64
_MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class Entry:
    system: str
    version: str | None
    code: str
    display: str | None
    designations: tuple[dict[str, Any], ...]  # led by the display, tagged with its language
    abstract: bool
    inactive: bool
    search_text: str

    def display_in(self, language: str | None) -> str | None:
        if language:
            for designation in self.designations:
                if _language_matches(language, designation.get("language")):
                    return designation.get("value")
        return self.display


@dataclass(frozen=True, slots=True)
class Expansion:
    entries: tuple[Entry, ...]
    index: dict[tuple[str, str], Entry]

    @property
    def keys(self) -> frozenset[tuple[str, str]]:
        return frozenset(self.index)


def _refuse(diagnostics: str, code: str = "too-costly") -> FhirError:
    return FhirError(422, diagnostics, code=code)


def _from_concept(cs: CodeSystemIndex, concept: Concept) -> Entry:
    return Entry(
        system=cs.url,
        version=cs.version,
        code=concept.code,
        display=concept.display,
        designations=tuple(cs.all_designations(concept)),
        abstract=concept.abstract,
        inactive=concept.inactive,
        search_text=concept.search_text,
    )


def _from_listed(system: str, listed: dict[str, Any], cs: CodeSystemIndex | None, language: str) -> Entry:
    """An entry for a concept named in ``compose.include.concept``: its display overrides the system's."""
    concept = cs.get(listed["code"]) if cs else None
    designations: list[dict[str, Any]] = []
    display = listed.get("display")
    if display:
        designations.append({"language": language, "value": display})
    designations.extend(listed.get("designation", []))
    if concept is not None and cs is not None:
        designations.extend(cs.all_designations(concept))
    display = display or (concept.display if concept else None)
    text = " ".join([listed["code"], *(d.get("value", "") for d in designations)])
    return Entry(
        system=system,
        version=cs.version if cs else None,
        code=concept.code if concept else listed["code"],
        display=display,
        designations=tuple(designations),
        abstract=bool(concept and concept.abstract),
        inactive=bool(concept and concept.inactive),
        search_text=normalise(text),
    )


def _property_matches(cs: CodeSystemIndex, concept: Concept, prop: str, wanted: set[str]) -> bool:
    if prop in ("concept", "code"):
        return concept.code in wanted
    if prop == "display":
        return concept.display in wanted
    for value in cs.property_values(concept, prop):
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if text in wanted:
            return True
    return False


def _apply_filter(cs: CodeSystemIndex, codes: list[str], f: dict[str, Any], where: str) -> list[str]:
    op, prop, value = f.get("op"), f.get("property", "concept"), str(f.get("value", ""))
    if op in ("is-a", "descendent-of", "is-not-a", "generalizes"):
        root = cs.get(value)
        if root is None:
            group: set[str] = set()
        elif op == "generalizes":
            group = {root.code, *cs.ancestors(root.code)}
        else:
            group = set(cs.descendants(root.code))
            if op != "descendent-of":
                group.add(root.code)
        if op == "is-not-a":
            return [c for c in codes if c not in group]
        return [c for c in codes if c in group]
    if op in ("=", "in", "not-in"):
        wanted = {value} if op == "=" else {v.strip() for v in value.split(",")}
        hit = [c for c in codes if _property_matches(cs, cs.concepts[c], prop, wanted)]
        if op == "not-in":
            hits = set(hit)
            return [c for c in codes if c not in hits]
        return hit
    if op == "regex":
        from fhir_server.fhirpath import PatternError, regex

        try:
            pattern = regex(value)  # RE2: a pattern from a ValueSet cannot stall the server
        except PatternError as exc:
            raise FhirError(
                422, f"Invalid regex in {where}: {exc}", code="invalid", expression=[where]
            ) from exc
        if prop in ("concept", "code"):
            return [c for c in codes if pattern.fullmatch(c)]
        return [
            c
            for c in codes
            if any(pattern.fullmatch(str(v)) for v in cs.property_values(cs.concepts[c], prop))
        ]
    if op == "exists":
        want = value.lower() == "true"
        return [c for c in codes if bool(cs.property_values(cs.concepts[c], prop)) == want]
    raise FhirError(
        422, f"Filter operator '{op}' in {where} is not supported", code="not-supported", expression=[where]
    )


def _expand_rule(
    rule: dict[str, Any], where: str, vs_url: str, language: str, precomputed: list[Entry] | None, depth: int
) -> list[Entry]:
    """Entries selected by one ``compose.include`` or ``compose.exclude`` element."""
    system = rule.get("system")
    out: list[Entry] | None = None
    if system:
        cs = registry().code_system(system)
        listed = rule.get("concept")
        if listed:
            out = [_from_listed(system, c, cs, language) for c in listed]
            if cs is not None and cs.content == "complete":
                out = [e for e in out if cs.get(e.code) is not None]
        elif cs is None:
            if precomputed is not None:
                out = [e for e in precomputed if e.system == system]
            else:
                raise _refuse(
                    f"ValueSet '{vs_url}' includes codes of '{system}' by rule, and this server does not "
                    "hold that code system: the expansion would be unbounded. List the codes instead."
                )
        else:
            codes = list(cs.concepts)
            for i, f in enumerate(rule.get("filter", [])):
                codes = _apply_filter(cs, codes, f, f"{where}.filter[{i}]")
            out = [_from_concept(cs, cs.concepts[c]) for c in codes]
    for ref in rule.get("valueSet", []):
        inner = _expansion_for_url(ref, depth + 1)
        out = list(inner.entries) if out is None else [e for e in out if (e.system, e.code) in inner.index]
    return out or []


def _precomputed(url: str | None) -> list[Entry] | None:
    if not url:
        return None
    found = definitions.value_set_expansion(url)
    if found is None:
        return None
    out: list[Entry] = []
    stack = list(reversed(found.get("contains", [])))
    while stack:
        item = stack.pop()
        if "code" in item and "system" in item:
            display = item.get("display")
            out.append(
                Entry(
                    system=item["system"],
                    version=item.get("version"),
                    code=item["code"],
                    display=display,
                    designations=({"language": "en", "value": display},) if display else (),
                    abstract=bool(item.get("abstract")),
                    inactive=bool(item.get("inactive")),
                    search_text=normalise(f"{item['code']} {display or ''}"),
                )
            )
        stack.extend(reversed(item.get("contains", [])))
    return out


def compute(value_set: dict[str, Any], depth: int = 0) -> Expansion:
    """Expand ``value_set`` fully (no paging, no text filter)."""
    if depth > _MAX_DEPTH:
        raise _refuse("ValueSet references nest too deeply (a cycle?)", code="processing")
    url = value_set.get("url", "")
    compose = value_set.get("compose")
    precomputed = _precomputed(url) if not registry().is_ours(url) else None
    if not compose:
        if precomputed is not None:
            return _index(precomputed)
        raise _refuse(
            f"ValueSet '{url or value_set.get('id')}' has no compose to expand", code="not-supported"
        )
    language = value_set.get("language") or "en"
    entries: list[Entry] = []
    for i, rule in enumerate(compose.get("include", [])):
        entries.extend(
            _expand_rule(rule, f"ValueSet.compose.include[{i}]", url, language, precomputed, depth)
        )
        if len(entries) > MAX_COMPUTED:
            raise _refuse(f"ValueSet '{url}' has more than {MAX_COMPUTED} concepts; it cannot be expanded")
    excluded: set[tuple[str, str]] = set()
    for i, rule in enumerate(compose.get("exclude", [])):
        excluded.update(
            (e.system, e.code)
            for e in _expand_rule(rule, f"ValueSet.compose.exclude[{i}]", url, language, precomputed, depth)
        )
    return _index([e for e in entries if (e.system, e.code) not in excluded])


def _index(entries: list[Entry]) -> Expansion:
    index: dict[tuple[str, str], Entry] = {}
    for e in entries:
        index.setdefault((e.system, e.code), e)
    return Expansion(entries=tuple(index.values()), index=index)


_by_url: dict[str, Expansion] = {}
_inline: OrderedDict[bytes, Expansion] = OrderedDict()


def _expansion_for_url(url: str, depth: int = 0) -> Expansion:
    base = url.split("|", 1)[0]
    cached = _by_url.get(base)
    if cached is not None:
        return cached
    value_set = registry().value_set(base)
    if value_set is None:
        raise FhirError(404, f"ValueSet '{url}' is not known to this server", code="not-found")
    result = compute(value_set, depth)
    _by_url[base] = result
    return result


def expansion_of(value_set: dict[str, Any] | None = None, url: str | None = None) -> Expansion:
    """The cached full expansion of a known value set (by URL) or of a resource given inline."""
    if value_set is None:
        if not url:
            raise FhirError(400, "A value set URL or resource is required", expression=["url"])
        return _expansion_for_url(url)
    known = value_set.get("url")
    if known and registry().value_set(known) == value_set:
        return _expansion_for_url(known)
    key = orjson.dumps(value_set.get("compose"), option=orjson.OPT_SORT_KEYS) + (known or "").encode()
    cached = _inline.get(key)
    if cached is None:
        cached = compute(value_set)
        _inline[key] = cached
        if len(_inline) > _INLINE_CACHE_SIZE:
            _inline.popitem(last=False)
    else:
        _inline.move_to_end(key)
    return cached
