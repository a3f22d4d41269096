"""Searchset entries carry the stored bytes: decimals such as 1.50 come back exactly as written."""

from __future__ import annotations

import httpx


async def test_decimal_survives_search(client: httpx.AsyncClient) -> None:
    body = (
        b'{"resourceType":"Observation","id":"dec1","status":"final",'
        b'"code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},'
        b'"valueQuantity":{"value":1.50,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}'
    )
    r = await client.put("/Observation/dec1", content=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code in (200, 201), r.text
    r = await client.get("/Observation", params={"code": "http://loinc.org|29463-7"})
    assert r.status_code == 200
    assert b'"value":1.50' in r.content
    assert b'"value":1.5,' not in r.content
    assert r.json()["entry"][0]["resource"]["id"] == "dec1"


async def test_decimal_survives_summary(client: httpx.AsyncClient) -> None:
    body = (
        b'{"resourceType":"Observation","id":"dec2","status":"final",'
        b'"code":{"text":"weight"},"valueQuantity":{"value":2.500,"unit":"kg"}}'
    )
    r = await client.put("/Observation/dec2", content=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code in (200, 201), r.text
    r = await client.get("/Observation", params={"_id": "dec2", "_summary": "data"})
    assert r.status_code == 200
    assert b'"value":2.500' in r.content
