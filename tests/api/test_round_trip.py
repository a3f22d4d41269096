"""Real content goes in and comes back unchanged apart from id and meta: every non-definition HL7 R4
example, and every resource of the shared Synthea bundles, created one by one over HTTP."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import SHARED

DEFINITIONAL = {
    "StructureDefinition",
    "CodeSystem",
    "ValueSet",
    "ConceptMap",
    "SearchParameter",
    "OperationDefinition",
    "CapabilityStatement",
    "CompartmentDefinition",
    "ImplementationGuide",
    "NamingSystem",
    "StructureMap",
    "GraphDefinition",
    "MessageDefinition",
    "TerminologyCapabilities",
    "ExampleScenario",
}


def exact(data: bytes) -> Any:
    """Parse keeping decimals as written, so 1.00 and 1.0 compare different."""
    return json.loads(data, parse_float=lambda text: ("decimal", text))


# Elements the server manages itself: a Subscription is ``requested`` until its handshake succeeds.
SERVER_MANAGED = {"Subscription": ("status", "error")}


def without_server_fields(resource: dict[str, Any]) -> dict[str, Any]:
    managed = SERVER_MANAGED.get(str(resource.get("resourceType")), ())
    out = {k: v for k, v in resource.items() if k not in ("id", "meta", *managed)}
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    return out


def hl7_examples() -> list[tuple[str, bytes]]:
    out = []
    with tarfile.open(SHARED / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz") as archive:
        for member in archive.getmembers():
            if not member.name.endswith(".json") or "package.json" in member.name or ".index" in member.name:
                continue
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            resource = orjson.loads(data)
            if resource.get("resourceType") in DEFINITIONAL:
                continue
            if resource.get("resourceType") == "Bundle" and resource.get("type") in ("transaction", "batch"):
                continue  # those are processed, not stored; the bundle tests load them
            out.append((Path(member.name).name, data))
    return out


# Examples the R4 specification itself publishes with errors (found by our validator).
SPEC_ERRORS = {
    "Questionnaire-qs1.json": "nested items have no linkId (a required element)",
    "Bundle-dataelements.json": "several entries share one fullUrl (bdl-7)",
    "DeviceMetric-example.json": "parent refers to a DeviceDefinition; R4 allows only Device",
    "DeviceUseStatement-example.json": "reasonReference refers to a Procedure, which R4 does not allow",
    "MedicationRequest-medrx0301.json": "dispenseRequest.performer refers to a Practitioner",
    "Observation-clinical-gender.json": "performer refers to an Encounter, which R4 does not allow",
    "ActivityDefinition-blood-tubes-supply.json": "txt-2: the narrative div holds only whitespace",
    "ActivityDefinition-heart-valve-replacement.json": "txt-2: the narrative div holds only whitespace",
    "EventDefinition-example.json": "txt-2: the narrative div holds only whitespace",
    "Questionnaire-zika-virus-exposure-assessment.json": "txt-2: the narrative div holds only whitespace",
    "Bundle-10bb101f-a121-4264-a920-67be9cb82c74.json": "fullUrl .../Patient/pat12 holds Patient/pat2 "
    "(fullUrl SHALL NOT disagree with the id)",
    "Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json": "fullUrl .../Patient/pat12 holds Patient/pat2",
    "Bundle-lri-example.json": "fullUrls .../Observation/lri-gramstain1, 2 hold Observation/gramstain1, 2",
    "Observation-f202.json": "a vital-signs body temperature without effective[x] (the R4 bodytemp profile)",
    "DiagnosticReport-example-pgx.json": "presentedForm.hash is not the SHA-1 of its data (Attachment.hash)",
}


async def round_trip(client: httpx.AsyncClient, data: bytes) -> tuple[int, Any, Any]:
    resource_type = orjson.loads(data)["resourceType"]
    response = await client.post(
        f"/{resource_type}", content=data, headers={"content-type": "application/fhir+json"}
    )
    if response.status_code != 201:
        return response.status_code, response.json(), None
    read = await client.get(f"/{resource_type}/{response.json()['id']}")
    return 201, without_server_fields(exact(data)), without_server_fields(exact(read.content))


@pytest.mark.slow
async def test_every_hl7_example_round_trips(client: httpx.AsyncClient) -> None:
    examples = hl7_examples()
    assert len(examples) > 600
    failures = []
    for name, data in examples:
        status, sent, got = await round_trip(client, data)
        if status != 201:
            if name not in SPEC_ERRORS or status != 422:
                failures.append((name, status, sent["issue"][:2]))
        elif name in SPEC_ERRORS:
            failures.append((name, "accepted although the specification example is invalid", None))
        elif sent != got:
            failures.append((name, "changed", None))
    assert failures == []


@pytest.mark.slow
async def test_synthea_resources_round_trip_one_by_one(client: httpx.AsyncClient) -> None:
    files = sorted((SHARED / "testdata" / "synthea" / "R4").glob("*.json"))
    count = 0
    for path in files:
        bundle = orjson.loads(path.read_bytes())
        for entry in bundle["entry"]:
            data = orjson.dumps(entry["resource"])
            status, sent, got = await round_trip(client, data)
            assert status == 201, (path.name, sent)
            assert sent == got
            count += 1
    assert count == 10637  # every resource of every shared Synthea bundle
