"""GET /metadata describes what is really routed and registered."""

from __future__ import annotations

import httpx

from fhir_server import definitions
from fhir_server.operations.table import OPERATIONS


async def test_capability_statement_reflects_the_server(client: httpx.AsyncClient) -> None:
    response = await client.get("/metadata")
    assert response.status_code == 200
    capability = response.json()
    assert capability["resourceType"] == "CapabilityStatement"
    assert capability["fhirVersion"] == "4.0.1"
    assert "application/fhir+json" in capability["format"]
    rest = capability["rest"][0]
    types = {entry["type"]: entry for entry in rest["resource"]}
    assert set(types) == set(definitions.resource_types()) | {"ViewDefinition"}  # hosted beside R4
    assert {i["code"] for i in rest["interaction"]} >= {
        "transaction",
        "batch",
        "search-system",
        "history-system",
    }
    patient = types["Patient"]
    assert {i["code"] for i in patient["interaction"]} >= {
        "read",
        "vread",
        "create",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "search-type",
    }
    assert patient["conditionalDelete"] == "multiple"
    names = {p["name"] for p in patient["searchParam"]}
    assert {"identifier", "birthdate", "name", "_id", "_lastUpdated"} <= names
    assert "Observation:subject" in types["Observation"]["searchInclude"] or any(
        i.startswith("Observation:subject") for i in types["Observation"]["searchInclude"]
    )
    advertised_ops = {op["name"] for entry in rest["resource"] for op in entry.get("operation", [])}
    advertised_ops |= {op["name"] for op in rest.get("operation", [])}
    assert advertised_ops == {op.name for op in OPERATIONS}
    assert types["AuditEvent"]["interaction"] and "delete" not in {
        i["code"] for i in types["AuditEvent"]["interaction"]
    }


async def test_every_advertised_search_parameter_is_accepted(client: httpx.AsyncClient) -> None:
    """Strict handling refuses unknown parameters, so each advertised one must parse."""
    capability = (await client.get("/metadata")).json()
    samples = {
        "string": "a",
        "token": "a",
        "reference": "Patient/1",
        "date": "2020",
        "number": "1",
        "quantity": "1",
        "uri": "http://a",
        "composite": None,
        "special": None,
    }
    for entry in capability["rest"][0]["resource"]:
        if entry["type"] not in ("Patient", "Observation", "Encounter", "ServiceRequest", "Consent", "Task"):
            continue
        for param in entry["searchParam"]:
            value = samples.get(param["type"])
            if value is None:
                continue
            response = await client.get(
                f"/{entry['type']}",
                params={param["name"]: value, "_count": "1"},
                headers={"Prefer": "handling=strict"},
            )
            assert response.status_code == 200, (entry["type"], param["name"], response.text[:300])
