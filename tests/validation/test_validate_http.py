"""$validate and profile enforcement over HTTP (the real ASGI app)."""

from __future__ import annotations

import httpx

from fhir_server import canonical
from tests.validation.conftest import load_example

FHIR_JSON = {"Content-Type": "application/fhir+json"}
CHILD = canonical.structure_definition(canonical.PROFILE_CHILD_PATIENT)


async def test_type_level_validate_with_resource_body(client: httpx.AsyncClient) -> None:
    patient = load_example("Patient-th-child-example")
    patient["identifier"][0]["value"] = "1103702488991"
    r = await client.post("/Patient/$validate", json=patient, headers=FHIR_JSON)
    assert r.status_code == 200
    errors = [i for i in r.json()["issue"] if i["severity"] == "error"]
    assert [i["expression"] for i in errors] == [["Patient.identifier[0]"]]
    assert "th-cid-1" in errors[0]["diagnostics"]


async def test_validate_with_parameters_and_profile(client: httpx.AsyncClient) -> None:
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": {"resourceType": "Patient", "birthDate": "2020-01-01"}},
            {"name": "profile", "valueUri": CHILD},
        ],
    }
    r = await client.post("/Patient/$validate", json=params, headers=FHIR_JSON)
    assert r.status_code == 200
    assert ["Patient.gender"] in [i["expression"] for i in r.json()["issue"]]


async def test_write_naming_a_profile_is_validated_against_it(client: httpx.AsyncClient) -> None:
    patient = load_example("Patient-th-child-example")
    del patient["id"]
    del patient["gender"]
    r = await client.post("/Patient", json=patient, headers=FHIR_JSON)
    assert r.status_code == 422
    assert ["Patient.gender"] in [i.get("expression") for i in r.json()["issue"]]
    patient["gender"] = "female"
    assert (await client.post("/Patient", json=patient, headers=FHIR_JSON)).status_code == 201


async def test_profiles_are_served_and_listed(client: httpx.AsyncClient) -> None:
    r = await client.get("/StructureDefinition", params={"url": CHILD})
    assert r.status_code == 200
    entries = r.json().get("entry", [])
    assert [e["resource"]["url"] for e in entries] == [CHILD]
    assert entries[0]["resource"]["snapshot"]["element"]
    cs = (await client.get("/metadata")).json()
    patient = next(x for x in cs["rest"][0]["resource"] if x["type"] == "Patient")
    assert CHILD in patient.get("supportedProfile", [])
