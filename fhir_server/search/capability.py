"""What the CapabilityStatement says about search, derived from the registry so it never over-promises."""

from __future__ import annotations

from typing import Any

from fhir_server.search import registry
from fhir_server.search.query import MODIFIERS

_COMMON = [
    {
        "name": "_id",
        "type": "token",
        "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
        "documentation": "Logical id. Modifiers: missing.",
    },
    {
        "name": "_lastUpdated",
        "type": "date",
        "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
        "documentation": "When the resource version last changed. Prefixes: eq ne gt lt ge le sa eb ap.",
    },
]
_PREFIXED = {"date", "number", "quantity"}


def _documentation(p: Any) -> str:
    mods = sorted(MODIFIERS.get(p.type, frozenset()))
    if p.type == "reference":
        mods.append("[type]")
    text = f"Modifiers: {', '.join(mods)}."
    if p.type in _PREFIXED:
        text += " Prefixes: eq ne gt lt ge le sa eb ap."
    if p.type == "token" and "in" in mods:
        text += " :in/:not-in need a value set the terminology service can expand."
    if p.type == "reference":
        text += " Chaining and _has supported."
    if registry.is_pending(p):
        text += " Not yet usable: waiting for $reindex."
    return text


def capability_search_params(resource_type: str) -> list[dict[str, Any]]:
    """``CapabilityStatement.rest.resource.searchParam`` for one type."""
    out = [dict(c) for c in _COMMON]
    for code, p in sorted(registry.parameters_for(resource_type).items()):
        if code in ("_id", "_lastUpdated") or registry.is_pending(p):
            continue
        entry = {"name": code, "type": p.type, "documentation": _documentation(p)}
        if p.url:
            entry["definition"] = p.url
        out.append(entry)
    for code, url in registry.computed_parameters(resource_type):
        definition = registry.definition(url) or {}
        out.append(
            {
                "name": code,
                "type": "special",
                "definition": url,
                "documentation": definition.get("description", "Computed when searched."),
            }
        )
    return out


def capability_includes(resource_type: str) -> tuple[list[str], list[str]]:
    """(searchInclude, searchRevInclude) for one type: its reference parameters, and those pointing at it."""
    includes = [
        "*",
        *sorted(
            f"{resource_type}:{code}"
            for code, p in registry.parameters_for(resource_type).items()
            if p.type == "reference" and not registry.is_pending(p)
        ),
    ]
    from fhir_server import definitions

    revincludes = ["*"]
    for source in sorted(definitions.resource_types()):
        for code, p in sorted(registry.parameters_for(source).items()):
            if (
                p.type == "reference"
                and not registry.is_pending(p)
                and (not p.targets or resource_type in p.targets)
            ):
                revincludes.append(f"{source}:{code}")
    return includes, revincludes
