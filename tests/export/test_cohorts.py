"""Group exports: plain member lists and member-filter criteria, exactly the members the caller may see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fhir_server import canonical
from fhir_server.export.cohort import MEMBER_FILTER
from tests.export.conftest import download, kick_off, open_world, wait_manifest
from tests.security import scene
from tests.security.conftest import Caller, World

ADMIN_AREA = canonical.code_system(canonical.CS_ADMIN_AREA)
DOPA = canonical.structure_definition(canonical.EXT_DOPA_ADDRESS_CODE)
LAT_KRABANG, BANG_RAK = "1011", "1004"
_CLASSES = ("demographics", "growth", "development", "health-condition")


def _child(child: str, born: str, district: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": child,
        "gender": "female",
        "birthDate": born,
        "address": [
            {
                "extension": [
                    {
                        "url": DOPA,
                        "extension": [
                            {"url": "province", "valueCoding": {"system": ADMIN_AREA, "code": "10"}},
                            {"url": "district", "valueCoding": {"system": ADMIN_AREA, "code": district}},
                        ],
                    }
                ]
            }
        ],
    }


# child -> (born, district, DSPM suspected delay?, research consent?)
CHILDREN = {
    "a": ("2019-05-01", LAT_KRABANG, True, True),
    "b": ("2020-07-01", LAT_KRABANG, True, True),
    "c": ("2021-11-30", LAT_KRABANG, False, True),  # no suspected delay
    "d": ("2018-03-01", LAT_KRABANG, True, True),  # born too early
    "e": ("2020-01-01", BANG_RAK, True, True),  # another district
    "f": ("2020-02-02", LAT_KRABANG, True, False),  # no research consent: never seen by the researcher
}


async def _setup(world: World) -> tuple[scene.Scene, Caller]:
    s = await scene.build(world)
    for child, (born, district, delayed, consented) in CHILDREN.items():
        await scene.load_as(world, "Organization/hosp", _child(child, born, district))
        if delayed:
            await s.hospital.create(scene.observation(child, scene.DEVELOPMENT, "DSPM"))
        await s.hospital.create(scene.observation(child, scene.GROWTH, "weight"))
        if consented:
            await s.hospital.create(
                scene.consent(child, agency_types=("research",), purposes=("HRESCH",), classes=_CLASSES)
            )
    return s, await world.caller("study", "Organization/research", "researcher")


@pytest.fixture
async def cohort_world(tmp_path: Path) -> Any:
    async for world in open_world(tmp_path, export_k=1):  # exact membership here; k-anonymity elsewhere
        yield world


def _members(files: dict[str, list[dict[str, Any]]]) -> int:
    return len(files.get("Patient", []))


async def test_criteria_cohort_is_evaluated_when_the_export_starts(cohort_world: World) -> None:
    s, researcher = await _setup(cohort_world)
    group = {
        "resourceType": "Group",
        "type": "person",
        "actual": False,
        "name": "Born 2019-2021 in Lat Krabang with a suspected DSPM delay",
        "extension": [
            {
                "url": MEMBER_FILTER,
                "valueExpression": {
                    "language": "application/x-fhir-query",
                    "expression": "Patient?birthdate=ge2019-01-01&birthdate=le2021-12-31",
                },
            },
            {
                "url": MEMBER_FILTER,
                "valueExpression": {
                    "language": "application/x-fhir-query",
                    "expression": "Patient?address=ลาดกระบัง",
                },
            },
            {
                "url": MEMBER_FILTER,
                "valueExpression": {
                    "language": "application/x-fhir-query",
                    "expression": "Observation?code=https://termtem.org/fhir/CodeSystem/th-screening-tool|DSPM"
                    "&value-concept=https://termtem.org/fhir/CodeSystem/th-dspm-result|suspected-delay",
                },
            },
        ],
    }
    created = await researcher.post("Group", group)
    assert created.status_code == 201, created.text
    gid = created.json()["id"]
    manifest = await wait_manifest(researcher, await kick_off(researcher, f"Group/{gid}/$export"))
    files = await download(researcher, manifest)
    # a and b only: c has no delay, d is too old, e lives elsewhere, f has no research consent
    assert _members(files) == 2
    assert {o["meta"].get("profile", [None])[0] for o in files["Observation"]} == {
        scene.GROWTH,
        scene.DEVELOPMENT,
    }
    assert len(files["Observation"]) == 4
    subjects = {o["subject"]["reference"] for o in files["Observation"]}
    assert subjects == {f"Patient/{p['id']}" for p in files["Patient"]}
    # the admin sees f too (no consent needed), through the same Group criteria... of its own Group
    admin_group = await s.admin.post("Group", group)
    admin_files = await download(
        s.admin,
        await wait_manifest(s.admin, await kick_off(s.admin, f"Group/{admin_group.json()['id']}/$export")),
    )
    assert sorted(p["id"] for p in admin_files["Patient"]) == ["a", "b", "f"]
    # another client cannot export (nor see) the researcher's Group
    assert (await s.hospital.get(f"Group/{gid}/$export", prefer="respond-async")).status_code == 404


async def test_member_list_exports_exactly_the_visible_members(cohort_world: World) -> None:
    _, researcher = await _setup(cohort_world)
    group = {
        "resourceType": "Group",
        "type": "person",
        "actual": True,
        "member": [
            {"entity": {"reference": "Patient/a"}},
            {"entity": {"reference": "Patient/c"}},
            {"entity": {"reference": "Patient/f"}},  # not consented for research: left out
            {"entity": {"reference": "Patient/e"}, "inactive": True},  # inactive: left out
            {"entity": {"reference": "Patient/b"}, "period": {"end": "2020-01-01"}},  # membership ended
            {"entity": {"reference": "Patient/ghost"}},  # does not exist
        ],
    }
    gid = (await researcher.post("Group", group)).json()["id"]
    files = await download(
        researcher, await wait_manifest(researcher, await kick_off(researcher, f"Group/{gid}/$export"))
    )
    assert _members(files) == 2
    assert len(files["Observation"]) == 3  # a: DSPM + growth; c: growth
    # the patient parameter narrows a Group export
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/c"}}],
    }
    reply = await researcher.post(f"Group/{gid}/$export", body, prefer="respond-async")
    assert reply.status_code == 202, reply.text
    narrowed = await download(researcher, await wait_manifest(researcher, reply.headers["content-location"]))
    assert _members(narrowed) == 1 and len(narrowed["Observation"]) == 1
