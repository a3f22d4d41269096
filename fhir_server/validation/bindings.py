"""Terminology bindings: is a code in the bound value set?

Value set membership comes from HL7's shipped expansions, from value sets that list their concepts or
include whole code systems we ship (core or ours), and from our own terminology service for Thai value
sets. Value sets over huge external systems (SNOMED CT, LOINC, UCUM, ...) that we cannot expand are
*uncheckable*: ``members`` returns None and the validator stays silent for them, because claiming a
SNOMED or LOINC code is wrong without the full release would produce false errors.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server import definitions

Members = frozenset[tuple[str, str]]


def _terminology() -> Any:
    """Our terminology package, imported lazily (it loads the Thai code systems on first use)."""
    try:
        from fhir_server import terminology
    except ImportError:
        return None
    return terminology


def _flatten(contains: list[dict[str, Any]], out: set[tuple[str, str]]) -> None:
    for c in contains:
        if "code" in c and not c.get("abstract"):
            out.add((c.get("system", ""), c["code"]))
        if c.get("contains"):
            _flatten(c["contains"], out)


def _concepts(concepts: list[dict[str, Any]], system: str, out: set[tuple[str, str]]) -> None:
    for c in concepts:
        out.add((system, c["code"]))
        if c.get("concept"):
            _concepts(c["concept"], system, out)


def _our_code_system(url: str) -> dict[str, Any] | None:
    term = _terminology()
    finder = getattr(term, "code_system", None) if term is not None else None
    if finder is None:
        return None
    try:
        return finder(url)
    except Exception:
        return None


# ValueSets and CodeSystems created over REST (url -> resource), set by ``runtime`` when the store changes;
# core and shipped ones with the same url win.
_runtime_value_sets: dict[str, dict[str, Any]] = {}
_runtime_code_systems: dict[str, dict[str, Any]] = {}


def set_runtime(value_sets: dict[str, dict[str, Any]], code_systems: dict[str, dict[str, Any]]) -> None:
    global _runtime_value_sets, _runtime_code_systems
    _runtime_value_sets, _runtime_code_systems = dict(value_sets), dict(code_systems)
    clear_cache()


@cache
def system_codes(system: str) -> frozenset[str] | None:
    """Every code of a complete code system we hold (core, ours, or created over REST); None otherwise."""
    cs = definitions.code_system(system) or _our_code_system(system) or _runtime_code_systems.get(system)
    if cs is None or cs.get("content", "complete") != "complete" or not cs.get("concept"):
        return None
    out: set[tuple[str, str]] = set()
    _concepts(cs["concept"], system, out)
    return frozenset(code for _s, code in out)


@cache
def case_insensitive_codes(system: str) -> frozenset[str] | None:
    """The casefolded codes of a complete code system that declares ``caseSensitive: false``, else None."""
    cs = definitions.code_system(system) or _our_code_system(system) or _runtime_code_systems.get(system)
    if cs is None or cs.get("caseSensitive") is not False:
        return None
    codes = system_codes(system)
    return frozenset(c.casefold() for c in codes) if codes is not None else None


def _enumerable(vs: dict[str, Any]) -> bool:
    """False when the value set draws on a code system we do not hold in full (SNOMED, BCP-13, ...)."""
    for part in ("include", "exclude"):
        for inc in (vs.get("compose") or {}).get(part, ()):
            system = inc.get("system")
            if system and not inc.get("concept") and system_codes(system) is None:
                return False
    return True


def _from_compose(vs: dict[str, Any]) -> Members | None:
    out: set[tuple[str, str]] = set()
    compose = vs.get("compose") or {}
    if compose.get("exclude"):
        return None
    for inc in compose.get("include", []):
        system = inc.get("system")
        if inc.get("valueSet"):
            for nested in inc["valueSet"]:
                sub = members(nested)
                if sub is None:
                    return None
                out |= sub
            if not system:
                continue
        if not system:
            return None
        if inc.get("filter"):
            return None
        if inc.get("concept"):
            out.update((system, c["code"]) for c in inc["concept"])
            continue
        codes = system_codes(system)
        if codes is None:
            return None
        out.update((system, code) for code in codes)
    return frozenset(out)


def _from_terminology(url: str) -> Members | None:
    term = _terminology()
    expand = getattr(term, "expand_codes", None) if term is not None else None
    if expand is None:
        return None
    try:
        result = expand(url)
    except Exception:
        return None
    if result is None:
        return None
    out: set[tuple[str, str]] = set()
    for item in result:
        if isinstance(item, tuple):
            out.add((item[0], item[1]))
        elif isinstance(item, dict):
            out.add((item.get("system", ""), item["code"]))
    return frozenset(out)


_members_cache: dict[str, Members | None] = {}


def members(value_set_url: str) -> Members | None:
    """(system, code) pairs of a value set, or None when we cannot enumerate it."""
    url = value_set_url.split("|", 1)[0]
    if url in _members_cache:
        return _members_cache[url]
    result: Members | None = None
    vs = definitions.value_set(url)
    expansion = definitions.value_set_expansion(url)
    if vs is not None and not _enumerable(vs):
        result = None
    elif expansion is not None and expansion.get("contains"):
        flat: set[tuple[str, str]] = set()
        _flatten(expansion["contains"], flat)
        total = expansion.get("total")
        result = frozenset(flat) if total is None or total <= len(flat) else None
    elif vs is not None:
        result = _from_compose(vs)
    else:
        result = _from_terminology(url)
        if result is None and url in _runtime_value_sets:
            result = value_set_members(_runtime_value_sets[url])
    _members_cache[url] = result
    return result


def value_set_members(vs: dict[str, Any]) -> Members | None:
    """(system, code) pairs of a ValueSet resource in hand (a contained one, say), or None."""
    expansion = vs.get("expansion")
    if isinstance(expansion, dict) and expansion.get("contains"):
        flat: set[tuple[str, str]] = set()
        _flatten(expansion["contains"], flat)
        total = expansion.get("total")
        return frozenset(flat) if total is None or total <= len(flat) else None
    if not _enumerable(vs):
        return None
    return _from_compose(vs)


_known_cache: dict[str, bool] = {}


def known_value_set(value_set_url: str) -> bool:
    """Does this server hold the value set at all (core R4, ours, or created over REST)?

    A binding to a value set the server does not hold cannot be checked; the validator says so (as
    the HL7 validator does) rather than passing it in silence.
    """
    url = value_set_url.split("|", 1)[0]
    hit = _known_cache.get(url)
    if hit is None:
        hit = definitions.value_set(url) is not None or url in _runtime_value_sets or _ours(url)
        _known_cache[url] = hit
    return hit


def _ours(url: str) -> bool:
    term = _terminology()
    if term is None:
        return False
    from fhir_server.terminology._registry import registry

    return registry().value_set(url) is not None


# Bumped whenever memberships may change (runtime ValueSets/CodeSystems, tests changing terminology):
# the validator's memo of sub-walks compares it.
generation = 0


def clear_cache() -> None:
    """Forget computed memberships (tests that change terminology call this)."""
    global generation
    generation += 1
    _members_cache.clear()
    _known_cache.clear()
    _codes_cache.clear()
    system_codes.cache_clear()
    case_insensitive_codes.cache_clear()


def check(type_code: str, value: Any, binding: dict[str, Any]) -> str | None:
    """None when ``value`` satisfies the binding (or cannot be checked); else a message."""
    url = binding.get("valueSet")
    if not url:
        return None
    allowed = members(url)
    if allowed is None:
        return None
    if type_code == "code":
        if not isinstance(value, str) or value in _codes_of(allowed):
            return None
        return f"The code '{value}' is not in the value set {url}"
    if type_code == "Coding":
        return _check_codings([value], allowed, url)
    if type_code == "CodeableConcept":
        codings = value.get("coding") if isinstance(value, dict) else None
        if not codings or not isinstance(codings, list):
            return None
        return _check_codings(codings, allowed, url)
    return None


_codes_cache: dict[int, tuple[Members, frozenset[str]]] = {}


def has_code(value_set_url: str, code: str) -> bool:
    """A ``code`` value ``check`` accepts for this value set without a finding: one of its codes, or a
    value set we hold but cannot list."""
    allowed = members(value_set_url)
    if allowed is None:
        return known_value_set(value_set_url)
    return code in _codes_of(allowed)


def _codes_of(allowed: Members) -> frozenset[str]:
    """The codes of a membership whatever their system (a ``code`` element names no system)."""
    hit = _codes_cache.get(id(allowed))
    if hit is None or hit[0] is not allowed:  # keyed by identity; the membership is kept alive with it
        hit = (allowed, frozenset(code for _system, code in allowed))
        if len(_codes_cache) > 4096:
            _codes_cache.clear()
        _codes_cache[id(allowed)] = hit
    return hit[1]


def _check_codings(codings: list[Any], allowed: Members, url: str) -> str | None:
    seen: list[str] = []
    for coding in codings:
        if not isinstance(coding, dict):
            continue
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(code, str) or not isinstance(system, str | None):
            continue  # a malformed coding: the structural check reports it
        if (system or "", code) in allowed:
            return None
        seen.append(f"{system}#{code}")
    if not seen:
        return None
    return f"None of the codes ({', '.join(seen)}) is in the value set {url}"
