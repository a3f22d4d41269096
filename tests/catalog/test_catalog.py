"""HL7's SearchParameters, ValueSets and CodeSystems: readable and searchable, never written to a store."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx

from fhir_server import definitions
from fhir_server.catalog import CATALOG_TYPES, by_id
from fhir_server.terminology import shipped_resources
from tests.conftest import make_settings, running_app
from tests.security.conftest import World

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"


def _matches(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def test_no_shipped_resource_of_ours_takes_an_hl7_id() -> None:
    for resource in shipped_resources():
        if resource["resourceType"] in CATALOG_TYPES:
            assert by_id(resource["resourceType"], resource["id"]) is None, resource["id"]


async def test_read_vread_and_the_r4_id_hint(client: httpx.AsyncClient) -> None:
    read = await client.get("SearchParameter/individual-birthdate")
    assert read.status_code == 200
    body = read.json()
    assert body["url"] == "http://hl7.org/fhir/SearchParameter/individual-birthdate"
    assert body["meta"]["versionId"] == "1" and read.headers["etag"] == 'W/"1"'
    assert (await client.get("SearchParameter/individual-birthdate/_history/1")).status_code == 200
    assert (await client.get("SearchParameter/individual-birthdate/_history/2")).status_code == 404
    history = (await client.get("SearchParameter/individual-birthdate/_history")).json()
    assert history["total"] == 1 and history["entry"][0]["response"]["etag"] == 'W/"1"'

    missing = await client.get("SearchParameter/Patient-birthdate")
    assert missing.status_code == 404
    assert "SearchParameter/individual-birthdate" in missing.json()["issue"][0]["diagnostics"]
    assert (await client.get("CodeSystem/administrative-gender")).json()["concept"][0]["code"] == "male"
    assert (await client.get("ValueSet/no-such-value-set")).status_code == 404


async def test_search_by_url_id_and_parameters(client: httpx.AsyncClient) -> None:
    by_url = (await client.get(f"ValueSet?url={GENDER_VS}")).json()
    assert [r["id"] for r in _matches(by_url)] == ["administrative-gender"]
    assert by_url["total"] == 1  # a complete first page counts the shipped matches too
    first_of_many = (await client.get("ValueSet?_count=2")).json()
    assert len(_matches(first_of_many)) == 2 and "total" not in first_of_many  # unknown unless asked
    assert _matches((await client.get("ValueSet?_id=administrative-gender")).json())[0]["url"] == GENDER_VS
    system = "http://hl7.org/fhir/administrative-gender"
    assert [r["id"] for r in _matches((await client.get(f"CodeSystem?url={system}")).json())] == [
        "administrative-gender"
    ]
    params = (await client.get("SearchParameter?base=Patient&code=birthdate")).json()
    assert [r["id"] for r in _matches(params)] == ["individual-birthdate"]
    counted = (await client.get("SearchParameter?base=Patient&_summary=count")).json()
    expected = sum(1 for sp in definitions.search_parameters() if "Patient" in sp["base"])
    assert counted["total"] >= expected  # plus any of ours on Patient (CID, G-code, province)
    assert (await client.get("ValueSet?url=https://termtem.org/fhir/ValueSet/th-dspm-result")).json()[
        "entry"
    ][0]["resource"]["id"] == "th-dspm-result"  # ours, from the store


async def test_paging_runs_through_stored_then_shipped_value_sets(client: httpx.AsyncClient) -> None:
    first = await client.get("ValueSet?_total=accurate&_count=400&_elements=url")
    bundle = first.json()
    total = bundle["total"]
    ours = sum(1 for r in shipped_resources() if r["resourceType"] == "ValueSet")
    assert total == ours + len(definitions.value_sets())
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        seen += [r["id"] for r in _matches(bundle)]
        assert bundle["total"] == total
        following = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        if following is None:
            break
        parts = urlsplit(following)
        bundle = (await client.get(f"{parts.path.removeprefix('/fhir/')}?{parts.query}")).json()
    assert len(seen) == total == len(set(seen)) and pages == -(-total // 400)
    assert seen.index("th-dspm-result") < seen.index("administrative-gender")  # stored ones first


async def test_shipped_definitions_are_read_only(client: httpx.AsyncClient) -> None:
    current = (await client.get("ValueSet/administrative-gender")).json()
    changed = await client.put("ValueSet/administrative-gender", json={**current, "title": "changed"})
    assert changed.status_code == 405 and "read-only" in changed.json()["issue"][0]["diagnostics"]
    assert (await client.delete("ValueSet/administrative-gender")).status_code == 405
    patched = await client.patch(
        "ValueSet/administrative-gender",
        json=[{"op": "replace", "path": "/title", "value": "x"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 405
    assert (await client.get("ValueSet/administrative-gender")).json().get("title") != "changed"
    expanded = await client.get("ValueSet/administrative-gender/$expand")
    codes = {c["code"] for c in expanded.json()["expansion"]["contains"]}
    assert codes == {"male", "female", "other", "unknown"}


async def test_scopes_still_decide_with_auth_on(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path, auth=True, data_dir=tmp_path / "data")) as (app, http):
        world = World(app, http, tmp_path)
        narrow = await world.caller("narrow", "Organization/a", "hospital", scopes="system/Patient.rs")
        wide = await world.caller("wide", "Organization/b", "hospital", scopes="system/ValueSet.rs")
        assert (await narrow.get("ValueSet/administrative-gender")).status_code == 403
        assert (await narrow.get(f"ValueSet?url={GENDER_VS}")).status_code == 403
        assert (await wide.get("ValueSet/administrative-gender")).status_code == 200
        found = (await wide.get(f"ValueSet?url={GENDER_VS}")).json()
        assert [r["id"] for r in _matches(found)] == ["administrative-gender"]
