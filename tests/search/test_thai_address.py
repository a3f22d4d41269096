"""Address search with and without เขต/แขวง, keyed on the DOPA codes of the address."""

from __future__ import annotations

import httpx

from fhir_server import canonical

DOPA = canonical.structure_definition(canonical.EXT_DOPA_ADDRESS_CODE)
AREA = canonical.code_system(canonical.CS_ADMIN_AREA)


def _patient(id_: str, address: dict) -> dict:
    return {"resourceType": "Patient", "id": id_, "address": [address]}


def _coded(district: str, subdistrict: str) -> dict:
    return {
        "extension": [
            {
                "url": DOPA,
                "extension": [
                    {"url": "province", "valueCoding": {"system": AREA, "code": district[:2]}},
                    {"url": "district", "valueCoding": {"system": AREA, "code": district}},
                    {"url": "subdistrict", "valueCoding": {"system": AREA, "code": subdistrict}},
                ],
            }
        ]
    }


async def _ids(client: httpx.AsyncClient, query: str) -> list[str]:
    reply = await client.get(f"Patient?{query}")
    assert reply.status_code == 200, reply.text
    return sorted(e["resource"]["id"] for e in reply.json().get("entry", []))


async def test_with_and_without_prefixes(client: httpx.AsyncClient) -> None:
    written = {
        "text-with-prefix": {"city": "แขวงลาดกระบัง", "district": "เขตลาดกระบัง", "state": "กรุงเทพมหานคร"},
        "text-without": {"city": "ลาดกระบัง", "district": "ลาดกระบัง"},
        "codes-only": _coded("1011", "101101"),
        "elsewhere": {"city": "แขวงบางรัก", "district": "เขตบางรัก"},
    }
    for id_, address in written.items():
        reply = await client.put(f"Patient/{id_}", json=_patient(id_, address))
        assert reply.status_code == 201, reply.text
    lat_krabang = ["codes-only", "text-with-prefix", "text-without"]
    assert await _ids(client, "address=ลาดกระบัง") == lat_krabang
    assert await _ids(client, "address=เขตลาดกระบัง") == lat_krabang
    assert await _ids(client, "address=แขวงลาดกระบัง") == lat_krabang
    assert await _ids(client, "address=Lat Krabang") == ["codes-only"]
    assert await _ids(client, "address=บางรัก") == ["elsewhere"]
    assert await _ids(client, "address=เขตบางรัก") == ["elsewhere"]
