"""A small shared world: agencies, two children, their data written by a hospital, and a consent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fhir_server import canonical
from tests.security.conftest import Caller, World, agency

GROWTH = canonical.structure_definition(canonical.PROFILE_GROWTH)
DEVELOPMENT = canonical.structure_definition(canonical.PROFILE_DEVELOPMENTAL_SCREENING)
DATA_CLASS = canonical.code_system(canonical.CS_DATA_CLASS)
AGENCY_TYPE_EXT = canonical.structure_definition(canonical.EXT_CONSENT_AGENCY_TYPE)
AGENCY_SYSTEM = canonical.code_system(canonical.CS_AGENCY_TYPE)


def consent(
    child: str,
    *,
    status: str = "active",
    agency_types: tuple[str, ...] = (),
    actors: tuple[str, ...] = (),
    purposes: tuple[str, ...] = ("COC",),
    classes: tuple[str, ...] = ("demographics", "growth", "development"),
    period: tuple[str | None, str | None] = ("2020-01-01", None),
    kind: str = "permit",
    nested: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    provision: dict[str, Any] = {"type": kind}
    if agency_types:
        provision["extension"] = [
            {
                "url": AGENCY_TYPE_EXT,
                "valueCodeableConcept": {"coding": [{"system": AGENCY_SYSTEM, "code": t}]},
            }
            for t in agency_types
        ]
    if actors:
        provision["actor"] = [
            {
                "role": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "IRCP",
                        }
                    ]
                },
                "reference": {"reference": a},
            }
            for a in actors
        ]
    if purposes:
        provision["purpose"] = [{"system": canonical.V3_ACT_REASON_SYSTEM, "code": p} for p in purposes]
    if classes:
        provision["code"] = [{"coding": [{"system": DATA_CLASS, "code": c}]} for c in classes]
    if period != (None, None):
        provision["period"] = {k: v for k, v in zip(("start", "end"), period, strict=True) if v}
    if nested:
        provision["provision"] = nested
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {"coding": [{"system": canonical.CONSENT_SCOPE_SYSTEM, "code": "patient-privacy"}]},
        "category": [
            {"coding": [{"system": canonical.LOINC_SYSTEM, "code": canonical.CONSENT_CATEGORY_LOINC}]}
        ],
        "patient": {"reference": f"Patient/{child}"},
        "dateTime": "2024-03-20T10:00:00+07:00",
        "policy": [{"uri": f"{canonical.BASE}/policy/pdpa-data-sharing"}],
        "provision": provision,
    }


EXAMPLES = Path(__file__).resolve().parents[2] / "profiles" / "examples"
_EXAMPLE = {GROWTH: "Observation-th-growth-example.json", DEVELOPMENT: "Observation-th-dspm-example.json"}


def observation(child: str, profile: str | None, text: str) -> dict[str, Any]:
    """An Observation about ``child``: a valid Thai-profile example when ``profile`` is given."""
    if profile:
        body: dict[str, Any] = orjson.loads((EXAMPLES / _EXAMPLE[profile]).read_bytes())
        body.pop("id", None)
        body["performer"] = [{"reference": "Organization/hosp"}]
        body["subject"] = {"reference": f"Patient/{child}"}
        return body
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{child}"},
    }


@dataclass
class Scene:
    world: World
    admin: Caller
    hospital: Caller
    school: Caller
    other_school: Caller
    ids: dict[str, str]


AGENCIES = {
    "hosp": "hospital",
    "school1": "school",
    "school2": "school",
    "cc": "childcare-centre",
    "sw": "social-welfare",
    "research": "research",
    "ops": "district-office",
}


async def build(world: World) -> Scene:
    admin = await world.caller("admin", "Organization/ops", "admin")
    for oid, kind in AGENCIES.items():
        reply = await admin.put(f"Organization/{oid}", agency(oid, kind))
        assert reply.status_code in (200, 201), reply.text
    hospital = await world.caller("hospital", "Organization/hosp", "hospital")
    school = await world.caller("school", "Organization/school1", "school")
    other_school = await world.caller("school-b", "Organization/school2", "school")
    ids: dict[str, str] = {}
    for child in ("child1", "child2"):
        reply = await hospital.put(
            f"Patient/{child}",
            {"resourceType": "Patient", "id": child, "gender": "female", "birthDate": "2020-01-01"},
        )
        assert reply.status_code == 201, reply.text
        ids[f"{child}-growth"] = (await hospital.create(observation(child, GROWTH, "weight")))["id"]
        ids[f"{child}-dev"] = (await hospital.create(observation(child, DEVELOPMENT, "DSPM")))["id"]
        ids[f"{child}-cond"] = (await hospital.create(observation(child, None, "diagnosis")))["id"]
    ids["consent"] = (await hospital.create(consent("child1", actors=("Organization/school1",))))["id"]
    return Scene(world, admin, hospital, school, other_school, ids)
