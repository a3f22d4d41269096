"""A generated child with a full record (growth, DSPM, vaccines, referrals, a flower, a consent), and
helpers to load it and read a summary document."""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Any

import httpx

from fhir_server import canonical
from fhir_server.synthetic import generate

FHIR_JSON = {"Content-Type": "application/fhir+json"}
GROWTH = canonical.structure_definition(canonical.PROFILE_GROWTH)
DEVELOPMENT = canonical.structure_definition(canonical.PROFILE_DEVELOPMENTAL_SCREENING)
WELLBEING = canonical.structure_definition(canonical.PROFILE_WELLBEING)
SECTION_SYSTEM = canonical.code_system(canonical.CS_SUMMARY_SECTION)


def _about(resource: dict[str, Any], child: str) -> bool:
    ref = f"Patient/{child}"
    return any(
        isinstance(resource.get(k), dict) and resource[k].get("reference") == ref
        for k in ("subject", "patient", "for")
    )


@cache
def full_record() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(agencies, the household, the child): the youngest generated child with every kind of record."""
    population = list(generate(17, 200, reference_date=date.today()))
    agencies, found = population[0], []
    for household in population[1:]:
        for child in (r for r in household if r["resourceType"] == "Patient"):
            mine = [r for r in household if _about(r, child["id"])]
            types = {r["resourceType"] for r in mine}
            claimed = {p for r in mine for p in r.get("meta", {}).get("profile", [])}
            if {"Immunization", "ServiceRequest", "Task"} <= types and {
                GROWTH,
                DEVELOPMENT,
                WELLBEING,
            } <= claimed:
                found.append((child["birthDate"], household, child))
    assert found, "the generator no longer makes a child with a full record"
    _, household, child = max(found, key=lambda f: f[0])
    return agencies, household, child


def of_child(
    household: list[dict[str, Any]], child: dict[str, Any], resource_type: str
) -> list[dict[str, Any]]:
    return [r for r in household if r["resourceType"] == resource_type and _about(r, child["id"])]


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


async def load_full_record(http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    agencies, household, child = full_record()
    reply = await http.post(
        "", json=transaction([*agencies, *household]), headers={**FHIR_JSON, **(headers or {})}
    )
    assert reply.status_code == 200, reply.text[:3000]
    return child


def sections(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every section of the Composition (sub-sections too) by its code."""
    composition = bundle["entry"][0]["resource"]
    out: dict[str, dict[str, Any]] = {}

    def walk(items: list[dict[str, Any]]) -> None:
        for section in items:
            out[section["code"]["coding"][0]["code"]] = section
            walk(section.get("section", []))

    walk(composition["section"])
    return out


def entry_ids(bundle: dict[str, Any], section: dict[str, Any]) -> set[str]:
    """``Type/id`` of the stored resources a section lists (computed ones have urn:uuid fullUrls)."""
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    out = set()
    for entry in section.get("entry", []):
        resource = by_url[entry["reference"]]
        if not entry["reference"].startswith("urn:"):
            out.add(f"{resource['resourceType']}/{resource['id']}")
    return out


def computed(bundle: dict[str, Any], section: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    return [
        by_url[e["reference"]]
        for e in section.get("entry", [])
        if e["reference"].startswith("urn:") and by_url[e["reference"]]["resourceType"] == resource_type
    ]
