"""Patient/$everything over HTTP (auth off): contents, _type, _since, paging and bad input."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson

from fhir_server.interactions.writes import now_instant

FHIR_JSON = {"Content-Type": "application/fhir+json"}


async def _put(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    # Sent as bytes with a decimal's trailing zero (json= would turn 12.50 into 12.5).
    body = orjson.dumps(resource).replace(b'"value":12.5', b'"value":12.50')
    reply = await client.put(f"{resource['resourceType']}/{resource['id']}", content=body, headers=FHIR_JSON)
    assert reply.status_code in (200, 201), reply.text


def _obs(id_: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": 12.5, "unit": "kg"},
    }


async def _world(client: httpx.AsyncClient) -> None:
    for pid in ("a", "b"):
        await _put(client, {"resourceType": "Patient", "id": pid, "gender": "male"})
    await _put(client, {"resourceType": "Organization", "id": "org", "name": "Clinic"})
    for i in range(3):
        await _put(client, _obs(f"a-obs{i}", "a"))
    await _put(client, _obs("b-obs", "b"))
    await _put(
        client,
        {
            "resourceType": "Condition",
            "id": "a-cond",
            "subject": {"reference": "Patient/a"},
            "code": {"text": "asthma"},
        },
    )
    await _put(
        client,
        {
            "resourceType": "Encounter",
            "id": "a-enc",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/a"},
        },
    )


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == "match"
    }


async def _golden(client: httpx.AsyncClient, patient: str) -> str:
    """The child's golden record (fhir_server.identity): part of the child's record, linked to Patient/a."""
    tag = "https://termtem.org/fhir/tag/identity|golden"
    reply = await client.get("Patient", params={"link": f"Patient/{patient}", "_tag": tag})
    return f"Patient/{reply.json()['entry'][0]['resource']['id']}"


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((lk["url"] for lk in bundle["link"] if lk["relation"] == relation), None)


A_ALL = {
    "Patient/a",
    "Observation/a-obs0",
    "Observation/a-obs1",
    "Observation/a-obs2",
    "Condition/a-cond",
    "Encounter/a-enc",
}


async def test_everything_is_the_patient_and_its_compartment(client: httpx.AsyncClient) -> None:
    await _world(client)
    reply = await client.get("Patient/a/$everything")
    assert reply.status_code == 200, reply.text
    bundle = reply.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    # Not Patient/b, its Observation, nor the Organization; the child's golden record is part of it.
    assert _ids(bundle) == A_ALL | {await _golden(client, "a")}
    assert _link(bundle, "next") is None
    assert _link(bundle, "self").startswith("http://testserver/fhir/Patient/a/$everything")
    # The stored bytes go out as they are.
    assert b'"value":12.50' in reply.content
    # POST with a Parameters body gives the same answer.
    posted = await client.post(
        "Patient/a/$everything",
        json={"resourceType": "Parameters", "parameter": [{"name": "_type", "valueCode": "Condition"}]},
        headers=FHIR_JSON,
    )
    assert posted.status_code == 200, posted.text
    assert _ids(posted.json()) == {"Condition/a-cond"}


async def test_type_narrows_to_the_named_types(client: httpx.AsyncClient) -> None:
    await _world(client)
    bundle = (await client.get("Patient/a/$everything", params={"_type": "Patient,Observation"})).json()
    assert _ids(bundle) == {
        "Patient/a",
        await _golden(client, "a"),
        "Observation/a-obs0",
        "Observation/a-obs1",
        "Observation/a-obs2",
    }
    bundle = (await client.get("Patient/a/$everything", params={"_type": "Encounter"})).json()
    assert _ids(bundle) == {"Encounter/a-enc"}


async def test_since_keeps_only_later_changes(client: httpx.AsyncClient) -> None:
    await _world(client)
    await asyncio.sleep(0.01)
    since = now_instant()
    await _put(client, {**_obs("a-obs1", "a"), "status": "amended"})
    await _put(client, _obs("a-obs9", "a"))
    await _put(client, _obs("b-obs9", "b"))
    bundle = (await client.get("Patient/a/$everything", params={"_since": since})).json()
    assert _ids(bundle) == {"Observation/a-obs1", "Observation/a-obs9"}
    # An offset time zone means the same instant; an unencoded '+' (a space) is understood too.
    bundle = (await client.get(f"Patient/a/$everything?_since={since[:-1]}+00:00")).json()
    assert _ids(bundle) == {"Observation/a-obs1", "Observation/a-obs9"}
    assert "_since=" in _link(bundle, "self")


async def test_paging_follows_next_links_to_every_resource_once(client: httpx.AsyncClient) -> None:
    await _world(client)
    url: str | None = "Patient/a/$everything?_count=2"
    seen: list[str] = []
    pages = 0
    while url:
        bundle = (await client.get(url)).json()
        ids = _ids(bundle)
        assert len(ids) <= 2
        seen.extend(ids)
        pages += 1
        url = _link(bundle, "next")
        if url:
            parts = urlsplit(url)
            assert parts.path == "/fhir/Patient/a/$everything"
            assert dict(parse_qsl(parts.query))["_count"] == "2"
    assert pages == 4
    assert sorted(seen) == sorted(A_ALL | {await _golden(client, "a")})
    # Paging keeps the filters: _type and _since travel in the next link.
    first = (await client.get("Patient/a/$everything", params={"_count": "1", "_type": "Observation"})).json()
    follow = (await client.get(_link(first, "next"))).json()
    assert _ids(first) | _ids(follow) <= {"Observation/a-obs0", "Observation/a-obs1", "Observation/a-obs2"}
    assert len(_ids(first) | _ids(follow)) == 2


async def test_unknown_deleted_and_bad_input(client: httpx.AsyncClient) -> None:
    await _world(client)
    assert (await client.get("Patient/nobody/$everything")).status_code == 404
    assert (await client.delete("Patient/b")).status_code in (200, 204)
    assert (await client.get("Patient/b/$everything")).status_code == 410
    for params, where in (
        ({"_since": "2024-01-01"}, "_since"),
        ({"_type": "Organization"}, "_type"),
        ({"_type": "NotAType"}, "_type"),
        ({"start": "2024-01-01"}, "start"),
        ({"_count": "many"}, "_count"),
    ):
        reply = await client.get("Patient/a/$everything", params=params)
        assert reply.status_code == 400, (params, reply.text)
        assert reply.json()["issue"][0]["expression"] == [where]
    # Only instance level is offered.
    assert (await client.get("Patient/$everything")).status_code == 404


def _included(bundle: dict[str, Any]) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == "include"
    }


async def test_referral_tasks_episodes_and_referenced_agencies_come_too(client: httpx.AsyncClient) -> None:
    """R4 leaves Task out of the Patient compartment; a child's record needs its referral status."""
    await _world(client)
    referral = {
        "resourceType": "ServiceRequest",
        "id": "a-ref",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/a"},
        "requester": {"reference": "Organization/org"},
    }
    task = {
        "resourceType": "Task",
        "id": "a-task",
        "status": "accepted",
        "intent": "order",
        "basedOn": [{"reference": "ServiceRequest/a-ref"}],
        "for": {"reference": "Patient/a"},
        "owner": {"reference": "Organization/org"},
    }
    episode = {
        "resourceType": "EpisodeOfCare",
        "id": "a-episode",
        "status": "active",
        "patient": {"reference": "Patient/a"},
        "managingOrganization": {"reference": "Organization/org"},
    }
    other_task = {**task, "id": "b-task", "for": {"reference": "Patient/b"}}
    for resource in (referral, task, episode, other_task):
        await _put(client, resource)
    bundle = (await client.get("Patient/a/$everything")).json()
    golden = await _golden(client, "a")
    assert _ids(bundle) == A_ALL | {golden, "ServiceRequest/a-ref", "Task/a-task", "EpisodeOfCare/a-episode"}
    assert _included(bundle) == {"Organization/org"}  # referenced, so it comes as an include
    narrowed = (await client.get("Patient/a/$everything", params={"_type": "Task,EpisodeOfCare"})).json()
    assert _ids(narrowed) == {"Task/a-task", "EpisodeOfCare/a-episode"}
    assert "_include" not in _link(narrowed, "self")
