"""Issue 19's rules seen the way a client sees them: a write that breaks one is a 422 whose
OperationOutcome names the element (FHIRPath ``expression``), and nothing is stored.

The rules themselves are tested both ways in ``test_r4_rules.py``; this module pins that each reaches
the HTTP write path (create through the real ASGI app).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

FHIR_JSON = {"Content-Type": "application/fhir+json"}
XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'
EXAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz"


def _example(name: str) -> dict[str, Any]:
    with tarfile.open(EXAMPLES) as tar:
        member = tar.extractfile(f"package/{name}")
        assert member is not None
        resource = json.load(member)
    resource.pop("id", None)
    return resource


async def _stored(client: httpx.AsyncClient, resource_type: str) -> int:
    r = await client.get(f"/{resource_type}")
    assert r.status_code == 200
    return int(r.json().get("total", 0))


async def _refused(client: httpx.AsyncClient, resource: dict[str, Any]) -> list[dict[str, Any]]:
    """POST ``resource``: it must be a 422 and nothing of its type stored; returns the error issues."""
    rtype = resource["resourceType"]
    before = await _stored(client, rtype)
    r = await client.post(f"/{rtype}", json=resource, headers=FHIR_JSON)
    assert r.status_code == 422, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert await _stored(client, rtype) == before
    return [i for i in outcome["issue"] if i["severity"] == "error"]


async def _accepted(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    r = await client.post(f"/{resource['resourceType']}", json=resource, headers=FHIR_JSON)
    assert r.status_code == 201, r.text


def _where(errors: list[dict[str, Any]]) -> list[str]:
    return [i["expression"][0] for i in errors]


# -- primitives, ids, JSON ---------------------------------------------------------------------------


async def test_ids_inside_contained_resources_and_bundles(client: httpx.AsyncClient) -> None:
    patient = {
        "resourceType": "Patient",
        "contained": [{"resourceType": "Practitioner", "id": "dr_a"}],
        "generalPractitioner": [{"reference": "#dr_a"}],
    }
    errors = await _refused(client, patient)
    assert _where(errors) == ["Patient.contained[0].id"]
    assert errors[0]["code"] == "value"
    patient["contained"][0]["id"] = "dr-a"
    patient["generalPractitioner"][0]["reference"] = "#dr-a"
    await _accepted(client, patient)

    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0",
                "resource": {"resourceType": "Patient", "id": "a b"},
            }
        ],
    }
    assert _where(await _refused(client, bundle)) == ["Bundle.entry[0].resource.id"]


async def test_empty_arrays_and_strings(client: httpx.AsyncClient) -> None:
    assert _where(await _refused(client, {"resourceType": "Patient", "name": []})) == ["Patient.name"]
    assert _where(await _refused(client, {"resourceType": "Patient", "name": [{"family": ""}]})) == [
        "Patient.name[0].family"
    ]


async def test_decimals_outside_the_r4_grammar(client: httpx.AsyncClient) -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}}
    errors = await _refused(client, {**obs, "valueQuantity": {"value": "12.50"}})
    assert _where(errors) == ["Observation.valueQuantity.value"]
    # not JSON numbers at all (a leading zero, NaN): unparseable JSON is a 400
    for text in ("012.5", "NaN", "12."):
        body = b'{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":'
        r = await client.post("/Observation", content=body + text.encode() + b"}}", headers=FHIR_JSON)
        assert r.status_code == 400, (text, r.text)
    assert await _stored(client, "Observation") == 0
    await _accepted(client, {**obs, "valueQuantity": {"value": 12.50}})


# -- narrative ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "div",
    [
        '<!DOCTYPE div [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><div ' + XHTML + ">&xxe;</div>",
        f"<div {XHTML}><script>alert(1)</script>x</div>",
        f'<div {XHTML}><a href="javascript:steal()">x</a></div>',
        f"<div {XHTML}><p>unclosed</div>",
    ],
)
async def test_unsafe_or_malformed_narrative(client: httpx.AsyncClient, div: str) -> None:
    patient = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    assert _where(await _refused(client, patient)) == ["Patient.text.div"]


# -- bundles -----------------------------------------------------------------------------------------


async def test_bundle_rules(client: httpx.AsyncClient) -> None:
    patient = {"resourceType": "Patient", "id": "a"}
    relative = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": "Patient/a", "resource": patient}],
    }
    assert _where(await _refused(client, relative)) == ["Bundle.entry[0].fullUrl"]
    mismatch = copy.deepcopy(relative)
    mismatch["entry"][0]["fullUrl"] = "https://x.org/fhir/Patient/b"
    assert _where(await _refused(client, mismatch)) == ["Bundle.entry[0].fullUrl"]
    twice = copy.deepcopy(relative)
    twice["entry"] = [{"fullUrl": "https://x.org/fhir/Patient/a", "resource": patient}] * 2
    errors = await _refused(client, twice)
    assert _where(errors) == ["Bundle"] and "bdl-7" in errors[0]["diagnostics"]
    searchset = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 0,
        "entry": [
            {"fullUrl": "https://x.org/fhir/Patient/a", "resource": patient, "search": {"mode": "match"}}
        ],
    }
    assert _where(await _refused(client, searchset)) == ["Bundle.total"]
    searchset["total"] = 1
    await _accepted(client, searchset)


# -- core rules --------------------------------------------------------------------------------------


async def test_vital_signs_profile_applies_without_being_named(client: httpx.AsyncClient) -> None:
    heart_rate = _example("Observation-heart-rate.json")
    del heart_rate["meta"]  # not claiming the profile: R4 requires it of a vital sign all the same
    del heart_rate["valueQuantity"]["code"]
    assert _where(await _refused(client, heart_rate)) == ["Observation.valueQuantity.code"]


async def test_the_blood_pressure_example_is_accepted(client: httpx.AsyncClient) -> None:
    await _accepted(client, _example("Observation-blood-pressure.json"))
    bp = _example("Observation-blood-pressure.json")
    bp["component"][1]["code"]["coding"][0]["code"] = "0000-0"  # no diastolic component any more
    errors = await _refused(client, bp)
    assert _where(errors) == ["Observation.component"]
    assert "DiastolicBP" in errors[0]["diagnostics"]


async def test_codes_of_core_code_systems_and_required_bindings(client: httpx.AsyncClient) -> None:
    category = {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "labs"}
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "category": [{"coding": [category]}],
    }
    errors = await _refused(client, obs)
    assert _where(errors) == ["Observation.category[0].coding[0].code"]
    assert errors[0]["code"] == "code-invalid"
    category["code"] = "laboratory"
    errors = await _refused(client, {**obs, "status": "done"})
    assert _where(errors) == ["Observation.status"] and "required binding" in errors[0]["diagnostics"]
    await _accepted(client, obs)


async def test_attachment_size_and_hash(client: httpx.AsyncClient) -> None:
    content = "ผลตรวจ".encode()
    data = base64.b64encode(content).decode()
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"contentType": "text/plain", "data": data, "size": len(content) + 1}}],
    }
    assert _where(await _refused(client, document)) == ["DocumentReference.content[0].attachment.size"]
    attachment = document["content"][0]["attachment"]
    attachment["size"] = len(content)
    attachment["hash"] = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    assert _where(await _refused(client, document)) == ["DocumentReference.content[0].attachment.hash"]
    attachment["hash"] = base64.b64encode(hashlib.sha1(content).digest()).decode()
    await _accepted(client, document)


async def test_a_leading_resource_type_invariant_is_enforced(client: httpx.AsyncClient) -> None:
    """R4 app-4 (``Appointment.cancelationReason.exists() implies ...``) starts with the type name."""
    appointment = {
        "resourceType": "Appointment",
        "status": "booked",
        "participant": [{"status": "accepted", "actor": {"reference": "Patient/1"}}],
        "cancelationReason": {"text": "ill"},
        "start": "2024-01-01T10:00:00+07:00",
        "end": "2024-01-01T11:00:00+07:00",
    }
    errors = await _refused(client, appointment)
    assert _where(errors) == ["Appointment"] and "app-4" in errors[0]["diagnostics"]
    assert errors[0]["code"] == "invariant"
    await _accepted(client, {**appointment, "status": "cancelled"})


# -- conformance resources' own rules ----------------------------------------------------------------


async def test_conformance_resources_own_rules(client: httpx.AsyncClient) -> None:
    search_parameter = {
        "resourceType": "SearchParameter",
        "url": "https://example.org/SearchParameter/nickname",
        "name": "Nickname",
        "status": "active",
        "description": "x",
        "code": "nickname",
        "base": ["Patient"],
        "type": "token",
        "expression": "Patient.nickname",
    }
    assert _where(await _refused(client, search_parameter)) == ["SearchParameter.expression"]
    code_system = {
        "resourceType": "CodeSystem",
        "url": "https://example.org/CodeSystem/x",
        "status": "active",
        "content": "complete",
        "count": 3,
        "concept": [{"code": "a"}, {"code": "b"}],
    }
    assert _where(await _refused(client, code_system)) == ["CodeSystem.count"]
    capability = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2024-01-01",
        "kind": "instance",
        "implementation": {"description": "x"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{"mode": "server"}, {"mode": "server"}],
    }
    assert _where(await _refused(client, capability)) == ["CapabilityStatement.rest[1].mode"]


async def test_strings_over_one_megabyte(client: httpx.AsyncClient) -> None:
    limit = 1024 * 1024
    errors = await _refused(client, {"resourceType": "Patient", "name": [{"text": "x" * (limit + 1)}]})
    assert _where(errors) == ["Patient.name[0].text"] and "1MB" in errors[0]["diagnostics"]
    await _accepted(client, {"resourceType": "Patient", "name": [{"text": "x" * limit}]})
