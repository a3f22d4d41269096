"""Profile rules that look at other resources hold on the write path too (the stored child's age)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import httpx

EXAMPLES = Path(__file__).resolve().parents[2] / "profiles" / "examples"


def consent_for(patient_id: str, performer: str) -> dict:
    consent = json.loads((EXAMPLES / "Consent-th-consent-example.json").read_text())
    consent = copy.deepcopy(consent)
    consent.pop("id")
    consent.pop("contained")
    consent["patient"] = {"reference": f"Patient/{patient_id}"}
    consent["performer"] = [{"reference": performer}]
    return consent


async def test_a_young_childs_consent_must_come_from_a_guardian(client: httpx.AsyncClient) -> None:
    await client.put(
        "/Patient/young", json={"resourceType": "Patient", "id": "young", "birthDate": "2020-05-01"}
    )
    await client.put(
        "/Patient/teen", json={"resourceType": "Patient", "id": "teen", "birthDate": "2008-05-01"}
    )
    by_child = await client.post("/Consent", json=consent_for("young", "Patient/young"))
    assert by_child.status_code == 422, by_child.text
    assert "th-consent-1" in by_child.text
    by_guardian = await client.post("/Consent", json=consent_for("young", "RelatedPerson/mother"))
    assert by_guardian.status_code == 201, by_guardian.text
    by_teen = await client.post("/Consent", json=consent_for("teen", "Patient/teen"))
    assert by_teen.status_code == 201, by_teen.text
