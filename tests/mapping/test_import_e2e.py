"""End to end: every format's samples go through the transaction endpoint; a second import adds nothing."""

from __future__ import annotations

import httpx

from fhir_server.cli.importer import profile_validator, validate_record
from fhir_server.mapping import RowError, batch_records, map_files
from tests.mapping.golden import MAPPINGS

_SAMPLES = [
    ("moph43", "moph43/samples/export-utf8"),
    ("moph43", "moph43/samples/export-tis620.zip"),
    ("bma-childcare-dspm", "bma-childcare-dspm/samples/dspm-2567.xlsx"),
    ("bma-school-health", "bma-school-health/samples/roster-2567.csv"),
    ("msdhs-case", "msdhs-case/samples/cases-2567-05.ndjson"),
]


async def _import_all(client: httpx.AsyncClient) -> None:
    check = profile_validator()
    for format_name, sample in _SAMPLES:
        records = []
        for item in map_files(format_name, [MAPPINGS / sample]):
            assert not isinstance(item, RowError), item
            assert check is None or validate_record(item, check) == []
            records.append(item)
        for bundle, _carried in batch_records(records, 50):
            response = await client.post("", json=bundle, headers={"Content-Type": "application/fhir+json"})
            assert response.status_code == 200, response.text


async def _count(client: httpx.AsyncClient, query: str) -> int:
    response = await client.get(f"/{query}", params={"_total": "accurate", "_count": "0"})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["total"] if "total" in body else len(body.get("entry", []))


async def test_all_formats_import_and_reimport_creates_no_duplicates(client: httpx.AsyncClient) -> None:
    await _import_all(client)
    first = {t: await _count(client, t) for t in ("Patient", "RelatedPerson", "Observation", "Immunization",
                                                  "ServiceRequest", "Task", "Consent")}
    # 4 persons (43-file) + 1 (zipped export) + 2 new childcare children + 3 students + 1 stateless case
    # child; child 1103700123458 arrives from three agencies but is one Patient.
    assert first["Patient"] == 11
    assert first["Consent"] == 1 and first["Task"] == 2
    await _import_all(client)
    assert {t: await _count(client, t) for t in first} == first
    found = await client.get("/Patient", params={"identifier": "https://terms.sil-th.org/id/th-cid|1103700123458"})
    assert len(found.json()["entry"]) == 1
