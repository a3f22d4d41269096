"""Profiles and terminology created over REST are used at once: by $validate, on writes, after updates
and deletions, and in another server process sharing the store."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, make_settings, running_app

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PROFILE_URL = "https://example.org/fhir/StructureDefinition/dated-patient"
CS_URL = "https://example.org/fhir/CodeSystem/household"
VS_URL = "https://example.org/fhir/ValueSet/household"

PROFILE: dict[str, Any] = {
    "resourceType": "StructureDefinition",
    "url": PROFILE_URL,
    "name": "DatedPatient",
    "status": "active",
    "fhirVersion": "4.0.1",
    "kind": "resource",
    "abstract": False,
    "type": "Patient",
    "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
    "derivation": "constraint",
    "differential": {
        "element": [
            {"id": "Patient", "path": "Patient"},
            {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1},
            {"id": "Patient.name", "path": "Patient.name", "max": "1"},
        ]
    },
}
PATIENT = {"resourceType": "Patient", "meta": {"profile": [PROFILE_URL]}, "name": [{"family": "Jaidee"}]}


def _errors(body: dict[str, Any]) -> list[list[str]]:
    return [i.get("expression", []) for i in body.get("issue", []) if i["severity"] == "error"]


async def test_a_profile_created_over_rest_is_used_at_once(client: httpx.AsyncClient) -> None:
    # unknown at first: a warning only
    r = await client.post("/Patient", json=PATIENT, headers=FHIR_JSON)
    assert r.status_code == 201
    created = await client.post("/StructureDefinition", json=PROFILE, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    sd_id = created.json()["id"]

    r = await client.post("/Patient", json=PATIENT, headers=FHIR_JSON)
    assert r.status_code == 422
    assert _errors(r.json()) == [["Patient.birthDate"]]
    r = await client.post(
        "/Patient/$validate",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "resource",
                    "resource": {"resourceType": "Patient", "name": [{"text": "a"}, {"text": "b"}]},
                },
                {"name": "profile", "valueUri": PROFILE_URL},
            ],
        },
        headers=FHIR_JSON,
    )
    assert r.status_code == 200
    assert sorted(_errors(r.json())) == [["Patient.birthDate"], ["Patient.name"]]

    # relax it: the same patient passes
    relaxed = copy.deepcopy(PROFILE)
    relaxed["id"] = sd_id
    relaxed["differential"]["element"][1]["min"] = 0
    assert (
        await client.put(f"/StructureDefinition/{sd_id}", json=relaxed, headers=FHIR_JSON)
    ).status_code == 200
    r = await client.post("/Patient", json=PATIENT, headers=FHIR_JSON)
    assert r.status_code == 201, r.text

    # tighten again, then delete it: unknown profile again, so only a warning
    assert (
        await client.put(f"/StructureDefinition/{sd_id}", json={**PROFILE, "id": sd_id}, headers=FHIR_JSON)
    ).status_code == 200
    assert (await client.post("/Patient", json=PATIENT, headers=FHIR_JSON)).status_code == 422
    assert (await client.delete(f"/StructureDefinition/{sd_id}")).status_code in (200, 204)
    r = await client.post(
        "/Patient", json=PATIENT, headers={**FHIR_JSON, "Prefer": "return=OperationOutcome"}
    )
    assert r.status_code == 201
    assert any("is not known to this server" in i["diagnostics"] for i in r.json()["issue"])


async def test_a_profile_on_a_runtime_profile(client: httpx.AsyncClient) -> None:
    assert (await client.post("/StructureDefinition", json=PROFILE, headers=FHIR_JSON)).status_code == 201
    child = {
        **copy.deepcopy(PROFILE),
        "url": PROFILE_URL + "-gendered",
        "name": "GenderedDatedPatient",
        "baseDefinition": PROFILE_URL,
        "differential": {"element": [{"id": "Patient.gender", "path": "Patient.gender", "min": 1}]},
    }
    assert (await client.post("/StructureDefinition", json=child, headers=FHIR_JSON)).status_code == 201
    patient = {"resourceType": "Patient", "meta": {"profile": [PROFILE_URL + "-gendered"]}}
    r = await client.post("/Patient", json=patient, headers=FHIR_JSON)
    assert r.status_code == 422
    assert sorted(_errors(r.json())) == [["Patient.birthDate"], ["Patient.gender"]]


@pytest.mark.parametrize(
    ("element", "where", "says"),
    [
        (
            {"id": "Patient.nickname", "path": "Patient.nickname", "min": 1},
            "differential.element[1]",
            "does not exist",
        ),
        (
            {"id": "Patient.gender:first", "path": "Patient.gender", "sliceName": "first"},
            "differential.element[1]",
            "does not repeat",
        ),
        (
            {"id": "Patient.identifier:cid", "path": "Patient.identifier", "sliceName": "cid"},
            "differential.element[1]",
            "no slicing",
        ),
    ],
)
async def test_a_profile_that_cannot_be_snapshot_generated_is_refused(
    client: httpx.AsyncClient, element: dict[str, Any], where: str, says: str
) -> None:
    broken = copy.deepcopy(PROFILE)
    broken["differential"]["element"] = [{"id": "Patient", "path": "Patient"}, element]
    r = await client.post("/StructureDefinition", json=broken, headers=FHIR_JSON)
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert issue["expression"] == [f"StructureDefinition.{where}"]
    assert says in issue["diagnostics"]
    assert (await client.get("/StructureDefinition", params={"url": PROFILE_URL})).json().get("total", 0) == 0


async def test_unknown_base_and_wrong_type_are_refused(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/StructureDefinition",
        json={**PROFILE, "baseDefinition": "https://nowhere.example/SD/x"},
        headers=FHIR_JSON,
    )
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["StructureDefinition.baseDefinition"]
    r = await client.post("/StructureDefinition", json={**PROFILE, "type": "Observation"}, headers=FHIR_JSON)
    assert r.status_code == 422
    # $validate reports the same without storing
    r = await client.post(
        "/StructureDefinition/$validate", json={**PROFILE, "type": "Observation"}, headers=FHIR_JSON
    )
    assert r.status_code == 200 and _errors(r.json())


def _bound_profile() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A code system, a value set of it, and a Patient profile binding maritalStatus to it (required)."""
    code_system = {
        "resourceType": "CodeSystem",
        "url": CS_URL,
        "status": "active",
        "content": "complete",
        "concept": [{"code": "alone"}, {"code": "family"}],
    }
    value_set = {
        "resourceType": "ValueSet",
        "url": VS_URL,
        "status": "active",
        "compose": {"include": [{"system": CS_URL}]},
    }
    profile = copy.deepcopy(PROFILE)
    profile["differential"]["element"] = [
        {"id": "Patient", "path": "Patient"},
        {
            "id": "Patient.maritalStatus",
            "path": "Patient.maritalStatus",
            "binding": {"strength": "required", "valueSet": VS_URL},
        },
    ]
    return code_system, value_set, profile


async def test_value_sets_and_code_systems_created_over_rest_serve_bindings(
    client: httpx.AsyncClient,
) -> None:
    code_system, value_set, profile = _bound_profile()
    r = await client.post("/CodeSystem", json=code_system, headers=FHIR_JSON)
    assert r.status_code == 201
    cs_id = r.json()["id"]
    for resource in (value_set, profile):
        assert (
            await client.post(f"/{resource['resourceType']}", json=resource, headers=FHIR_JSON)
        ).status_code == 201

    def patient(code: str) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "meta": {"profile": [PROFILE_URL]},
            "maritalStatus": {"coding": [{"system": CS_URL, "code": code}]},
        }

    assert (await client.post("/Patient", json=patient("family"), headers=FHIR_JSON)).status_code == 201
    r = await client.post("/Patient", json=patient("shelter"), headers=FHIR_JSON)
    assert r.status_code == 422
    assert sorted(_errors(r.json())) == [["Patient.maritalStatus"], ["Patient.maritalStatus.coding[0].code"]]
    # the code system grows: the code is accepted at once
    code_system["id"] = cs_id
    code_system["concept"].append({"code": "shelter"})
    assert (await client.put(f"/CodeSystem/{cs_id}", json=code_system, headers=FHIR_JSON)).status_code == 200
    assert (await client.post("/Patient", json=patient("shelter"), headers=FHIR_JSON)).status_code == 201


@pytest.mark.slow
async def test_another_server_process_sees_profile_changes_at_once(tmp_path: Path) -> None:
    """A second process (uvicorn) on the same store file follows creates, updates and deletions."""
    store = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    port = free_port()
    command = [sys.executable, "-m", "fhir_server", "serve", "--port", str(port), "--store", store,
               "--log-level", "warning", "--auth", "off"]  # fmt: skip
    async with running_app(make_settings(tmp_path, store_url=store)) as (_app, here):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}/fhir"
            async with httpx.AsyncClient(base_url=base, timeout=30) as there:
                for _ in range(300):
                    try:
                        if (await there.get("/metadata")).status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                assert (await there.post("/Patient", json=PATIENT, headers=FHIR_JSON)).status_code == 201
                created = await here.post("/StructureDefinition", json=PROFILE, headers=FHIR_JSON)
                assert created.status_code == 201
                sd_id = created.json()["id"]
                r = await there.post("/Patient", json=PATIENT, headers=FHIR_JSON)
                assert r.status_code == 422 and _errors(r.json()) == [["Patient.birthDate"]]
                relaxed = copy.deepcopy(PROFILE)
                relaxed["id"] = sd_id
                relaxed["differential"]["element"][1]["min"] = 0
                assert (
                    await here.put(f"/StructureDefinition/{sd_id}", json=relaxed, headers=FHIR_JSON)
                ).status_code == 200
                assert (await there.post("/Patient", json=PATIENT, headers=FHIR_JSON)).status_code == 201
                assert (
                    await here.put(
                        f"/StructureDefinition/{sd_id}", json={**PROFILE, "id": sd_id}, headers=FHIR_JSON
                    )
                ).status_code == 200
                assert (await there.post("/Patient", json=PATIENT, headers=FHIR_JSON)).status_code == 422
                assert (await here.delete(f"/StructureDefinition/{sd_id}")).status_code in (200, 204)
                assert (await there.post("/Patient", json=PATIENT, headers=FHIR_JSON)).status_code == 201
        finally:
            process.terminate()
            process.wait(timeout=30)


async def test_value_set_and_code_system_updates_and_deletions_count_at_once(
    client: httpx.AsyncClient,
) -> None:
    code_system, value_set, profile = _bound_profile()
    ids = {}
    for resource in (code_system, value_set, profile):
        r = await client.post(f"/{resource['resourceType']}", json=resource, headers=FHIR_JSON)
        assert r.status_code == 201, r.text
        ids[resource["resourceType"]] = r.json()["id"]

    def patient(code: str) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "meta": {"profile": [PROFILE_URL]},
            "maritalStatus": {"coding": [{"system": CS_URL, "code": code}]},
        }

    assert (await client.post("/Patient", json=patient("family"), headers=FHIR_JSON)).status_code == 201
    # the value set narrows to one code: the other is refused from the next request
    narrowed = {
        **value_set,
        "id": ids["ValueSet"],
        "compose": {"include": [{"system": CS_URL, "concept": [{"code": "alone"}]}]},
    }
    assert (
        await client.put(f"/ValueSet/{ids['ValueSet']}", json=narrowed, headers=FHIR_JSON)
    ).status_code == 200
    r = await client.post("/Patient", json=patient("family"), headers=FHIR_JSON)
    assert r.status_code == 422
    assert _errors(r.json()) == [["Patient.maritalStatus"]]
    # $validate names the runtime profile through meta.profile too
    r = await client.post("/Patient/$validate", json=patient("family"), headers=FHIR_JSON)
    assert r.status_code == 200 and _errors(r.json()) == [["Patient.maritalStatus"]]
    assert (await client.post("/Patient", json=patient("alone"), headers=FHIR_JSON)).status_code == 201
    # the code system loses a code: that code is unknown at once, even where no binding asks for it
    shrunk = {**code_system, "id": ids["CodeSystem"], "concept": [{"code": "family"}]}
    assert (
        await client.put(f"/CodeSystem/{ids['CodeSystem']}", json=shrunk, headers=FHIR_JSON)
    ).status_code == 200
    r = await client.post("/Patient", json=patient("alone"), headers=FHIR_JSON)
    assert r.status_code == 422
    assert ["Patient.maritalStatus.coding[0].code"] in _errors(r.json())
    # deleted: the server no longer holds the code system, so its codes cannot be judged (R4 bindings
    # to systems the server lacks are not errors), and the deleted value set is reported as unknown
    assert (await client.delete(f"/CodeSystem/{ids['CodeSystem']}")).status_code in (200, 204)
    assert (await client.delete(f"/ValueSet/{ids['ValueSet']}")).status_code in (200, 204)
    r = await client.post(
        "/Patient", json=patient("alone"), headers={**FHIR_JSON, "Prefer": "return=OperationOutcome"}
    )
    assert r.status_code == 201, r.text
    assert any(VS_URL in i["diagnostics"] and i["severity"] == "warning" for i in r.json()["issue"])
