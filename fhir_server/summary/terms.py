"""Thai display and English designation of a code, from the code systems the server holds."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from fhir_server import terminology


@cache
def _extra() -> dict[tuple[str, str], tuple[str | None, str | None]]:
    """Thai texts for codes of HL7 code systems: our ValueSets' listed concepts, then labels.json."""
    out: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for resource in terminology.shipped_resources():
        if resource.get("resourceType") != "ValueSet":
            continue
        for include in resource.get("compose", {}).get("include", []):
            for concept in include.get("concept", []):
                english = next(
                    (d.get("value") for d in concept.get("designation", []) if d.get("language") == "en"),
                    None,
                )
                out[(include.get("system", ""), concept["code"])] = (concept.get("display"), english)
    labels = json.loads(
        resources.files("fhir_server.summary").joinpath("data/labels.json").read_text("utf-8")
    )
    for system, codes in labels.items():
        if isinstance(codes, dict):
            for code, (thai, english) in codes.items():
                out.setdefault((system, code), (thai, english))
    return out


@cache
def _concepts(system: str) -> dict[str, tuple[str | None, str | None]]:
    resource = terminology.code_system(system)
    out: dict[str, tuple[str | None, str | None]] = {}

    def walk(concepts: list[dict[str, Any]]) -> None:
        for concept in concepts:
            english = next(
                (d.get("value") for d in concept.get("designation", []) if d.get("language") == "en"), None
            )
            display = concept.get("display")
            if resource is not None and resource.get("language", "en") != "th":
                english = english or display
            out[concept["code"]] = (display, english)
            walk(concept.get("concept", []))

    walk(resource.get("concept", []) if resource else [])
    return out


def display(system: str, code: str) -> tuple[str | None, str | None]:
    """(Thai display, English designation) of ``system|code``; (None, None) if unknown.

    Our code systems are Thai with English designations; for HL7's English ones the Thai text comes
    from our value sets or the summary's label data, and HL7's display is the English.
    """
    extra = _extra().get((system, code))
    if extra is not None:
        return extra
    return _concepts(system).get(code, (None, None))


def coding(system: str, code: str) -> dict[str, str]:
    """A Coding with the code system's own display."""
    shown, _ = display(system, code)
    return {"system": system, "code": code, **({"display": shown} if shown else {})}


def concept_text(concept: Any) -> tuple[str, str | None]:
    """What to show for a CodeableConcept: (Thai or given text, English where a code system has it)."""
    if not isinstance(concept, dict):
        return "", None
    for c in concept.get("coding", []) if isinstance(concept.get("coding"), list) else []:
        if not isinstance(c, dict) or not isinstance(c.get("code"), str):
            continue
        shown, english = display(str(c.get("system", "")), c["code"])
        if shown or english:
            return shown or c.get("display") or english or c["code"], english
    for c in concept.get("coding", []) if isinstance(concept.get("coding"), list) else []:
        if isinstance(c, dict) and (c.get("display") or c.get("code")):
            return str(c.get("display") or c.get("code")), None
    return str(concept.get("text") or ""), None


def has_code(concept: Any, system: str, codes: set[str] | frozenset[str] | None = None) -> str | None:
    """The first code of ``system`` in a CodeableConcept (among ``codes`` if given)."""
    if not isinstance(concept, dict):
        return None
    for c in concept.get("coding", []) if isinstance(concept.get("coding"), list) else []:
        if (
            isinstance(c, dict)
            and c.get("system") == system
            and isinstance(c.get("code"), str)
            and (codes is None or c["code"] in codes)
        ):
            return str(c["code"])
    return None
