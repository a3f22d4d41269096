"""The wellbeing flower over HTTP: the Questionnaire is readable, a completed response is scored into
one searchable Observation per dimension plus the overall level in the same write, and a response the
scorer cannot read is refused (422 naming the item) with nothing stored."""

from __future__ import annotations

from typing import Any

import httpx

from fhir_server import canonical
from fhir_server.wellbeing import QUESTIONNAIRE_URL, dimensions

FHIR_JSON = {"Content-Type": "application/fhir+json"}
LEVEL = canonical.code_system(canonical.CS_WELLBEING_LEVEL)
DIMENSION = canonical.code_system(canonical.CS_WELLBEING_DIMENSION)
SCORE = canonical.code_system(canonical.CS_WELLBEING_SCORE)


def flower(child: str, ratings: dict[str, str], *, status: str = "completed") -> dict[str, Any]:
    """A response rating every question: ``ratings`` maps a question's linkId (or a dimension's, for
    all its questions) to a level code; the rest are 'good'."""
    groups = []
    for dimension in dimensions():
        answers = []
        for question in dimension.questions:
            level = ratings.get(question.link_id, ratings.get(dimension.link_id, "good"))
            answers.append(
                {"linkId": question.link_id, "answer": [{"valueCoding": {"system": LEVEL, "code": level}}]}
            )
        groups.append({"linkId": dimension.link_id, "item": answers})
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": QUESTIONNAIRE_URL,
        "status": status,
        "subject": {"reference": f"Patient/{child}"},
        "authored": "2026-03-01T10:00:00+07:00",
        "author": {"reference": "Organization/sw"},
        "item": groups,
    }


async def _child(client: httpx.AsyncClient) -> str:
    reply = await client.put(
        "Patient/kid",
        json={"resourceType": "Patient", "id": "kid", "gender": "female", "birthDate": "2019-05-01"},
    )
    assert reply.status_code in (200, 201), reply.text
    return "kid"


async def _scores(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    reply = await client.get("Observation", params={"subject": "Patient/kid", "_count": "50", **params})
    assert reply.status_code == 200, reply.text
    return [e["resource"] for e in reply.json().get("entry", []) if e["search"]["mode"] == "match"]


def _level(observation: dict[str, Any]) -> str:
    return str(observation["valueCodeableConcept"]["coding"][0]["code"])


async def test_the_questionnaire_is_data_readable_at_its_id(client: httpx.AsyncClient) -> None:
    reply = await client.get(f"Questionnaire/{canonical.QUESTIONNAIRE_WELLBEING}")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["url"] == QUESTIONNAIRE_URL and body["status"] == "draft"  # provisional
    coded = [c["code"] for item in body["item"] for c in item.get("code", [])]
    assert coded == [d.code for d in dimensions()] == ["health", "education", "family", "income"]


async def test_a_completed_response_is_scored_per_dimension_and_overall(client: httpx.AsyncClient) -> None:
    child = await _child(client)
    response = flower(child, {"family.care": "at-risk", "income": "watch"})
    reply = await client.post("QuestionnaireResponse", json=response, headers=FHIR_JSON)
    assert reply.status_code == 201, reply.text
    response_id = reply.json()["id"]
    scores = await _scores(client, derived_from=f"QuestionnaireResponse/{response_id}")
    by_code = {s["code"]["coding"][0]["code"]: s for s in scores}
    assert {k: _level(v) for k, v in by_code.items()} == {
        "health": "good",
        "education": "good",
        "family": "at-risk",  # the worst of its two questions
        "income": "watch",
        "overall": "at-risk",  # the worst dimension
    }
    family = by_code["family"]
    assert family["meta"]["profile"] == [canonical.structure_definition(canonical.PROFILE_WELLBEING_SCORE)]
    assert family["effectiveDateTime"] == response["authored"]
    assert family["performer"] == [{"reference": "Organization/sw"}]
    # Searchable by code (and by level).
    found = await _scores(client, code=f"{DIMENSION}|family")
    assert [s["id"] for s in found] == [family["id"]]
    found = await _scores(client, code=f"{SCORE}|overall", **{"value-concept": f"{LEVEL}|at-risk"})
    assert [s["id"] for s in found] == [by_code["overall"]["id"]]
    # The scores are valid against their profile.
    checked = await client.post("Observation/$validate", json=family, headers=FHIR_JSON)
    assert not [i for i in checked.json()["issue"] if i["severity"] in ("error", "fatal")], checked.text


async def test_rescoring_on_update_and_retraction(client: httpx.AsyncClient) -> None:
    child = await _child(client)
    created = (await client.post("QuestionnaireResponse", json=flower(child, {}), headers=FHIR_JSON)).json()
    rid = created["id"]
    before = {
        s["code"]["coding"][0]["code"]: s
        for s in await _scores(client, derived_from=f"QuestionnaireResponse/{rid}")
    }
    assert _level(before["overall"]) == "good"
    updated = {**flower(child, {"health.care": "crisis"}), "id": rid}
    assert (
        await client.put(f"QuestionnaireResponse/{rid}", json=updated, headers=FHIR_JSON)
    ).status_code == 200
    after = {
        s["code"]["coding"][0]["code"]: s
        for s in await _scores(client, derived_from=f"QuestionnaireResponse/{rid}")
    }
    assert after["health"]["id"] == before["health"]["id"]  # the same resources, new versions
    assert _level(after["health"]) == _level(after["overall"]) == "crisis"
    assert after["health"]["meta"]["versionId"] == "2" and after["income"]["meta"]["versionId"] == "1"
    # Withdrawn (entered in error): every score is marked so, nothing reads a stale level.
    withdrawn = {**updated, "status": "entered-in-error"}
    assert (
        await client.put(f"QuestionnaireResponse/{rid}", json=withdrawn, headers=FHIR_JSON)
    ).status_code == 200
    statuses = {s["status"] for s in await _scores(client, derived_from=f"QuestionnaireResponse/{rid}")}
    assert statuses == {"entered-in-error"}


async def test_a_deleted_response_retracts_its_scores(client: httpx.AsyncClient) -> None:
    child = await _child(client)
    rid = (await client.post("QuestionnaireResponse", json=flower(child, {}), headers=FHIR_JSON)).json()["id"]
    assert (await client.delete(f"QuestionnaireResponse/{rid}")).status_code in (200, 204)
    statuses = {s["status"] for s in await _scores(client, derived_from=f"QuestionnaireResponse/{rid}")}
    assert statuses == {"entered-in-error"}


async def test_an_in_progress_response_is_not_scored(client: httpx.AsyncClient) -> None:
    child = await _child(client)
    draft = flower(child, {}, status="in-progress")
    draft["item"] = draft["item"][:1]  # half filled in: fine while in progress
    assert (await client.post("QuestionnaireResponse", json=draft, headers=FHIR_JSON)).status_code == 201
    assert await _scores(client) == []


async def test_unscorable_responses_are_refused_naming_the_item(client: httpx.AsyncClient) -> None:
    child = await _child(client)
    missing = flower(child, {})
    del missing["item"][2]["item"][1]["answer"]
    wrong = flower(child, {"education.learning": "excellent"})
    other_system = flower(child, {})
    other_system["item"][0]["item"][0]["answer"][0]["valueCoding"]["system"] = "http://example.org/levels"
    no_dimension = flower(child, {})
    del no_dimension["item"][3]
    # Each case names its item: by linkId (the scorer) or by its path (the validator, which checks codes
    # of our code systems before the write and so answers first for an unknown level code).
    cases = [
        (
            missing,
            (
                "QuestionnaireResponse.item.where(linkId='family').item.where(linkId='family.relationships')",
                "QuestionnaireResponse.item[2].item[1]",  # the validator's Questionnaire check: required
            ),
        ),
        (
            wrong,
            (
                "QuestionnaireResponse.item.where(linkId='education').item.where(linkId='education.learning')",
                "QuestionnaireResponse.item[1].item[1].answer[0]",
            ),
        ),
        (
            other_system,
            (
                "QuestionnaireResponse.item.where(linkId='health').item.where(linkId='health.physical')",
                "QuestionnaireResponse.item[0].item[0].answer[0]",  # the validator: not an answer option
            ),
        ),
        (
            no_dimension,
            ("QuestionnaireResponse.item.where(linkId='income')", "QuestionnaireResponse: Item 'income'"),
        ),
    ]
    for body, names in cases:
        reply = await client.post("QuestionnaireResponse", json=body, headers=FHIR_JSON)
        assert reply.status_code == 422, reply.text
        issues = reply.json()["issue"]
        expressions = [e for i in issues for e in i.get("expression") or []] + [
            str(i.get("diagnostics", "")) for i in issues
        ]
        assert any(e.startswith(names) for e in expressions), issues
    # A rejected request changes nothing: no response and no score was stored.
    listed = (await client.get("QuestionnaireResponse", params={"subject": "Patient/kid"})).json()
    assert not listed.get("entry")
    assert await _scores(client) == []
