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
PARTICIPATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


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
    guardian: str | None = "guardian",
) -> dict[str, Any]:
    """A TH data-sharing Consent for ``child``, given by its guardian (``RelatedPerson/<guardian>``)."""
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
    body: dict[str, Any] = {
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
    if guardian:
        body["performer"] = [{"reference": f"RelatedPerson/{guardian}"}]
    return body


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


async def load_as(world: World, agency: str, resource: dict[str, Any]) -> dict[str, Any]:
    """Store ``resource`` under its own id as ``agency``'s record, the way ``termtem load --store
    --agency`` does (agency clients cannot choose ids over the API). Also stands for data an agency
    wrote while a consent let it see the child, which stays its own after the consent ends."""
    from fhir_server.interactions.context import RequestContext
    from fhir_server.interactions.update import update
    from fhir_server.security.guard import agency_writer

    ctx = RequestContext(
        store=agency_writer(world.store, agency), settings=world.app.state.settings, base_url=""
    )
    outcome = await update(ctx, resource["resourceType"], resource["id"], orjson.dumps(resource))
    assert outcome.stored is not None
    return dict(orjson.loads(outcome.stored.body))


async def earlier_note(world: World, agency: str, child: str, text: str) -> dict[str, Any]:
    """An Observation ``agency`` wrote about ``child`` earlier (under a consent since withdrawn)."""
    import uuid

    note = {**observation(child, None, text), "id": f"note-{uuid.uuid4().hex[:12]}"}
    return await load_as(world, agency, note)


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
        await world.set_agency(f"Organization/{oid}", kind)
        reply = await admin.put(f"Organization/{oid}", agency(oid, kind))
        assert reply.status_code in (200, 201), reply.text
    hospital = await world.caller("hospital", "Organization/hosp", "hospital")
    school = await world.caller("school", "Organization/school1", "school")
    other_school = await world.caller("school-b", "Organization/school2", "school")
    ids: dict[str, str] = {}
    for child in ("child1", "child2"):
        await load_as(
            world,
            "Organization/hosp",
            {"resourceType": "Patient", "id": child, "gender": "female", "birthDate": "2020-01-01"},
        )
        ids[f"{child}-growth"] = (await hospital.create(observation(child, GROWTH, "weight")))["id"]
        ids[f"{child}-dev"] = (await hospital.create(observation(child, DEVELOPMENT, "DSPM")))["id"]
        ids[f"{child}-cond"] = (await hospital.create(observation(child, None, "diagnosis")))["id"]
    ids["consent"] = (await hospital.create(consent("child1", actors=("Organization/school1",))))["id"]
    return Scene(world, admin, hospital, school, other_school, ids)
