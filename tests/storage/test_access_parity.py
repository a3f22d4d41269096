"""Consent enforcement inside the search, run against every backend: the same caller sees the same
resources (matches, totals, chain and ``_has`` inner resources, includes) on SQLite and MongoDB."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_server.search.access import Access, Grant
from fhir_server.search.extract import extract_index
from fhir_server.search.model import param_key
from fhir_server.search.query import parse_search
from fhir_server.security import access as acc
from fhir_server.storage.base import Store, StoredResource

SCHOOL = "Organization/school1"
GROWTH = next(url for url, cls in acc.OBSERVATION_CLASS.items() if cls == "growth")
WHEN = "2026-01-01T00:00:00.000Z"


def _links(rtype: str) -> tuple[int, ...]:
    return acc.patient_links()[rtype]


ACCESS = Access(
    types=frozenset({"Patient", "Observation", "Organization", "Encounter"}),
    open_types=frozenset({"Organization"}),
    owner_system=acc.OWNER_TAG_SYSTEM,
    owner_code=SCHOOL,
    owner_keys=acc.owner_keys(),
    grants=(
        Grant("Patient", (), frozenset({"c1", "c2"})),
        Grant(
            "Observation",
            _links("Observation"),
            frozenset({"c1"}),
            param_key("Observation", "_profile"),
            (GROWTH,),
        ),
        Grant(
            "Observation",
            _links("Observation"),
            frozenset({"c2"}),
            param_key("Observation", "_profile"),
            (),
            tuple(sorted(acc.OBSERVATION_CLASS)),
        ),
    ),
)


def _patient(id_: str, name: str, owned: bool = False) -> dict[str, Any]:
    meta = {"tag": [{"system": acc.OWNER_TAG_SYSTEM, "code": SCHOOL}]} if owned else {}
    return {"resourceType": "Patient", "id": id_, "name": [{"family": name}], "meta": meta}


def _observation(
    id_: str, child: str, code: str, growth: bool = False, owned: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if growth:
        meta["profile"] = [GROWTH]
    if owned:
        meta["tag"] = [{"system": acc.OWNER_TAG_SYSTEM, "code": SCHOOL}]
    return {
        "resourceType": "Observation",
        "id": id_,
        "meta": meta,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{child}"},
        "performer": [{"reference": "Organization/org1"}],
    }


RESOURCES = [
    _patient("c1", "anna"),
    _patient("c2", "bea"),
    _patient("c3", "cho", owned=True),  # written by the caller's own agency
    _patient("c4", "dora"),  # no consent, not ours: never visible
    {"resourceType": "Organization", "id": "org1", "name": "clinic"},  # open type
    _observation("o1", "c1", "growth", growth=True),  # growth data of c1: consented
    _observation("o2", "c1", "secret"),  # health data of c1: not consented
    _observation("o3", "c2", "health"),  # health data of c2: consented
    _observation("o4", "c2", "growth", growth=True),  # growth data of c2: not consented
    _observation("o5", "c3", "health", owned=True),
    _observation("o6", "c4", "health", owned=True),  # ours, about a child the caller may not see
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/c1"},
    },  # no grant for encounters
]


async def _fill(store: Store) -> None:
    async with store.transaction() as tx:
        for body in RESOURCES:
            raw = orjson.dumps(body)
            await tx.put(
                StoredResource(body["resourceType"], body["id"], 1, WHEN, "POST", raw), extract_index(body)
            )


async def _search(store: Store, rtype: str | None, text: str) -> tuple[list[str], list[str], int | None]:
    query = parse_search(
        rtype,
        parse_qsl(text, keep_blank_values=True),
        base_url="http://x/fhir",
        strict=True,
        default_count=50,
        max_count=100,
    )
    query.access = ACCESS
    page = await store.search(query)
    return (
        sorted(f"{r.resource_type}/{r.id}" for r in page.matches),
        sorted(f"{r.resource_type}/{r.id}" for r in page.included),
        page.total,
    )


async def test_restricted_search_is_the_same_on_every_backend(any_store: Store) -> None:
    await _fill(any_store)
    observations = ["Observation/o1", "Observation/o3", "Observation/o5", "Observation/o6"]
    assert await _search(any_store, "Observation", "_total=accurate") == (observations, [], 4)
    assert await _search(any_store, "Observation", "_summary=count") == ([], [], 4)
    assert await _search(any_store, "Patient", "") == (["Patient/c1", "Patient/c2", "Patient/c3"], [], 3)
    assert await _search(any_store, "Encounter", "_total=accurate") == ([], [], 0)
    assert await _search(any_store, "Organization", "") == (["Organization/org1"], [], 1)
    # chain: o6 is visible, but the child it names is not, so it cannot be found through her name
    assert await _search(any_store, "Observation", "subject:Patient.name=dora") == ([], [], 0)
    assert await _search(any_store, "Observation", "subject:Patient.name=cho") == (["Observation/o5"], [], 1)
    # _has: o2 is the only "secret" observation, and it is hidden, so it reveals nothing about c1
    assert await _search(any_store, "Patient", "_has:Observation:subject:code=secret") == ([], [], 0)
    assert await _search(any_store, "Patient", "_has:Observation:subject:code=growth") == (
        ["Patient/c1"],
        [],
        1,
    )
    # includes: only visible targets and sources
    assert await _search(any_store, "Observation", "_include=Observation:subject") == (
        observations,
        ["Patient/c1", "Patient/c2", "Patient/c3"],
        4,
    )
    assert await _search(any_store, "Observation", "code=growth&_include=*") == (
        ["Observation/o1"],
        ["Organization/org1", "Patient/c1"],
        1,
    )
    assert await _search(any_store, "Patient", "_id=c1,c2&_revinclude=Observation:subject") == (
        ["Patient/c1", "Patient/c2"],
        ["Observation/o1", "Observation/o3"],
        2,
    )
    # a system search over several types, with one the caller cannot read at all
    assert await _search(any_store, None, "_type=Patient,Encounter,Practitioner&_total=accurate") == (
        ["Patient/c1", "Patient/c2", "Patient/c3"],
        [],
        3,
    )
