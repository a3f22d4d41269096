"""Terminology operations end to end over HTTP (in-process ASGI app, fresh store)."""

from __future__ import annotations

import httpx

from fhir_server import canonical

ADMIN = canonical.code_system(canonical.CS_ADMIN_AREA)
DSPM_RESULT = canonical.code_system(canonical.CS_DSPM_RESULT)


def value(body: dict, name: str):
    p = next(p for p in body["parameter"] if p["name"] == name)
    return next(v for k, v in p.items() if k.startswith("value"))


async def test_lookup_get_thai_and_english(client: httpx.AsyncClient) -> None:
    r = await client.get("/CodeSystem/$lookup", params={"system": ADMIN, "code": "100101"})
    assert r.status_code == 200, r.text
    assert value(r.json(), "display") == "พระบรมมหาราชวัง"
    r = await client.get(
        "/CodeSystem/$lookup", params={"system": ADMIN, "code": "100101", "displayLanguage": "en"}
    )
    assert value(r.json(), "display") == "Phra Borom Maha Ratchawang"


async def test_lookup_unknown_code_is_404_outcome(client: httpx.AsyncClient) -> None:
    r = await client.get("/CodeSystem/$lookup", params={"system": DSPM_RESULT, "code": "nope"})
    assert r.status_code == 404
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "not-found"


async def test_validate_code_post_and_unknown_system_get(client: httpx.AsyncClient) -> None:
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "url", "valueUri": canonical.value_set(canonical.VS_GUARDIAN_RELATIONSHIP)},
            {
                "name": "coding",
                "valueCoding": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                    "code": "GRMTH",
                },
            },
        ],
    }
    r = await client.post(
        "/ValueSet/$validate-code", json=params, headers={"Content-Type": "application/fhir+json"}
    )
    assert r.status_code == 200, r.text
    assert value(r.json(), "result") is True and value(r.json(), "display") == "ย่า/ยาย"
    r = await client.get(
        "/ValueSet/$validate-code",
        params={
            "url": canonical.value_set(canonical.CS_DSPM_RESULT),
            "system": "http://example.org/x",
            "code": "pass",
        },
    )
    assert r.status_code == 200
    assert value(r.json(), "result") is False and "Unknown code system" in value(r.json(), "message")


async def test_expand_filter_and_refusal(client: httpx.AsyncClient) -> None:
    url = canonical.value_set(canonical.VS_ADMIN_AREA_SUBDISTRICT)
    r = await client.get("/ValueSet/$expand", params={"url": url, "filter": "Phra Borom"})
    assert r.status_code == 200, r.text
    assert [c["code"] for c in r.json()["expansion"]["contains"]] == ["100101"]
    r = await client.get("/ValueSet/$expand", params={"url": url})
    assert r.status_code == 422
    assert r.json()["issue"][0]["code"] == "too-costly"


async def test_expand_instance_base_value_set_and_translate(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/ValueSet/{canonical.CS_MOPH_SEX}/$expand", params={"displayLanguage": "en"})
    assert r.status_code == 200, r.text
    assert [c["display"] for c in r.json()["expansion"]["contains"]] == ["Male", "Female"]
    r = await client.get(
        "/ValueSet/$expand",
        params={"url": "http://hl7.org/fhir/ValueSet/observation-status", "filter": "amended"},
    )
    assert [c["code"] for c in r.json()["expansion"]["contains"]] == ["amended"]
    r = await client.get(
        "/ConceptMap/$translate",
        params={"system": canonical.code_system(canonical.CS_MOPH_CHILDDEVELOP), "code": "1"},
    )
    assert r.status_code == 200, r.text
    assert value(r.json(), "result") is True


async def test_subsumes_admin_area(client: httpx.AsyncClient) -> None:
    r = await client.get(
        f"/CodeSystem/{canonical.CS_ADMIN_AREA}/$subsumes", params={"codeA": "10", "codeB": "100101"}
    )
    assert r.status_code == 200, r.text
    assert value(r.json(), "outcome") == "subsumes"
