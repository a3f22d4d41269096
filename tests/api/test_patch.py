"""PATCH with JSON Patch and FHIRPath Patch."""

from __future__ import annotations

import httpx

JSON_PATCH = {"content-type": "application/json-patch+json"}


async def make_patient(client: httpx.AsyncClient) -> str:
    body = {
        "resourceType": "Patient",
        "gender": "male",
        "name": [{"family": "Somchai", "given": ["A", "B"]}],
        "identifier": [{"system": "urn:a", "value": "1"}, {"system": "urn:b", "value": "2"}],
    }
    return (await client.post("/Patient", json=body)).json()["id"]


async def test_json_patch(client: httpx.AsyncClient) -> None:
    pid = await make_patient(client)
    ops = [
        {"op": "replace", "path": "/gender", "value": "female"},
        {"op": "add", "path": "/name/0/given/-", "value": "C"},
        {"op": "remove", "path": "/identifier/1"},
        {"op": "test", "path": "/name/0/family", "value": "Somchai"},
    ]
    response = await client.patch(f"/Patient/{pid}", json=ops, headers={**JSON_PATCH, "If-Match": 'W/"1"'})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["gender"] == "female"
    assert body["name"][0]["given"] == ["A", "B", "C"]
    assert len(body["identifier"]) == 1
    assert body["meta"]["versionId"] == "2"


async def test_json_patch_failures_change_nothing(client: httpx.AsyncClient) -> None:
    pid = await make_patient(client)
    failed_test = [
        {"op": "replace", "path": "/gender", "value": "female"},
        {"op": "test", "path": "/name/0/family", "value": "Other"},
    ]
    assert (await client.patch(f"/Patient/{pid}", json=failed_test, headers=JSON_PATCH)).status_code == 422
    invalid = [{"op": "replace", "path": "/gender", "value": "robot"}]
    assert (await client.patch(f"/Patient/{pid}", json=invalid, headers=JSON_PATCH)).status_code == 422
    change_id = [{"op": "replace", "path": "/id", "value": "other"}]
    assert (await client.patch(f"/Patient/{pid}", json=change_id, headers=JSON_PATCH)).status_code == 422
    stale = [{"op": "replace", "path": "/gender", "value": "female"}]
    assert (
        await client.patch(f"/Patient/{pid}", json=stale, headers={**JSON_PATCH, "If-Match": 'W/"3"'})
    ).status_code == 412
    assert (await client.get(f"/Patient/{pid}")).json()["meta"]["versionId"] == "1"
    assert (await client.patch("/Patient/none", json=stale, headers=JSON_PATCH)).status_code == 404


def operation(**parts: object) -> dict:
    out = []
    for name, value in parts.items():
        if isinstance(value, dict):
            out.append({"name": name, **value})
        elif isinstance(value, int):
            out.append({"name": name, "valueInteger": value})
        else:
            out.append({"name": name, "valueString" if name != "type" else "valueCode": value})
    return {"name": "operation", "part": out}


async def test_fhirpath_patch(client: httpx.AsyncClient) -> None:
    pid = await make_patient(client)
    patch = {
        "resourceType": "Parameters",
        "parameter": [
            operation(type="replace", path="Patient.gender", value={"valueCode": "female"}),
            operation(type="add", path="Patient", name="birthDate", value={"valueDate": "2020-02-02"}),
            operation(type="insert", path="Patient.name[0].given", index=0, value={"valueString": "Z"}),
            operation(type="delete", path="Patient.identifier.where(system='urn:a')"),
            operation(type="move", path="Patient.name[0].given", source=0, destination=2),
        ],
    }
    response = await client.patch(
        f"/Patient/{pid}", json=patch, headers={"content-type": "application/fhir+json"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["gender"] == "female"
    assert body["birthDate"] == "2020-02-02"
    assert body["name"][0]["given"] == ["A", "B", "Z"]
    assert body["identifier"] == [{"system": "urn:b", "value": "2"}]


async def test_fhirpath_patch_errors(client: httpx.AsyncClient) -> None:
    pid = await make_patient(client)
    too_many = {
        "resourceType": "Parameters",
        "parameter": [operation(type="delete", path="Patient.identifier")],
    }
    response = await client.patch(f"/Patient/{pid}", json=too_many)
    assert response.status_code == 422
    wrong_root = {
        "resourceType": "Parameters",
        "parameter": [operation(type="delete", path="Observation.code")],
    }
    assert (await client.patch(f"/Patient/{pid}", json=wrong_root)).status_code == 400
    assert (await client.get(f"/Patient/{pid}")).json()["meta"]["versionId"] == "1"


async def test_fhirpath_patch_where_is_typed_by_the_model(client: httpx.AsyncClient) -> None:
    """where() criteria run on the server's FHIRPath engine with each element's R4 type: a choice
    (value[x]) is found by its type, and a name the type lacks is a clear 400, not a silent no-op."""
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "blood pressure"},
        "component": [
            {"code": {"text": "systolic"}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
            {"code": {"text": "note"}, "valueString": "seated"},
        ],
    }
    oid = (await client.post("/Observation", json=obs)).json()["id"]
    patch = {
        "resourceType": "Parameters",
        "parameter": [operation(type="delete", path="Observation.component.where(value.is(string))")],
    }
    response = await client.patch(f"/Observation/{oid}", json=patch)
    assert response.status_code == 200, response.text
    assert [c["code"]["text"] for c in response.json()["component"]] == ["systolic"]
    bad = {
        "resourceType": "Parameters",
        "parameter": [operation(type="delete", path="Observation.component.where(valu.exists())")],
    }
    response = await client.patch(f"/Observation/{oid}", json=bad)
    assert response.status_code == 400
    assert "valu" in response.json()["issue"][0]["diagnostics"]
