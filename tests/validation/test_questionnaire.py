"""QuestionnaireResponse against its Questionnaire: each R4 rule, positive and negative, then over HTTP."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from fhir_server.validation.validator import validate

Q_URL = "https://example.org/Questionnaire/intake"
FHIR_JSON = {"Content-Type": "application/fhir+json"}

QUESTIONNAIRE: dict[str, Any] = {
    "resourceType": "Questionnaire",
    "url": Q_URL,
    "version": "2",
    "status": "active",
    "item": [
        {"linkId": "name", "type": "string", "text": "Name", "required": True, "maxLength": 10},
        {"linkId": "age", "type": "integer", "text": "Age"},
        {"linkId": "smoker", "type": "boolean", "text": "Smokes?", "required": True},
        {
            "linkId": "packs",
            "type": "integer",
            "text": "Packs a day",
            "required": True,
            "enableWhen": [{"question": "smoker", "operator": "=", "answerBoolean": True}],
        },
        {
            "linkId": "colour",
            "type": "choice",
            "text": "Colour",
            "answerOption": [
                {"valueCoding": {"system": "https://example.org/colours", "code": "red"}},
                {"valueCoding": {"system": "https://example.org/colours", "code": "green"}},
            ],
        },
        {
            "linkId": "gender",
            "type": "choice",
            "text": "Gender",
            "answerValueSet": "http://hl7.org/fhir/ValueSet/administrative-gender",
        },
        {
            "linkId": "pet",
            "type": "open-choice",
            "text": "Pet",
            "answerOption": [{"valueString": "cat"}, {"valueString": "dog"}],
        },
        {"linkId": "sports", "type": "string", "text": "Sports", "repeats": True},
        {
            "linkId": "household",
            "type": "group",
            "repeats": True,
            "item": [
                {"linkId": "member", "type": "string", "text": "Member", "required": True},
                {
                    "linkId": "member-age",
                    "type": "integer",
                    "text": "Member's age",
                    "enableWhen": [{"question": "member", "operator": "exists", "answerBoolean": True}],
                },
            ],
        },
        {"linkId": "thanks", "type": "display", "text": "Thank you"},
    ],
}

VALID: dict[str, Any] = {
    "resourceType": "QuestionnaireResponse",
    "questionnaire": Q_URL,
    "status": "completed",
    "item": [
        {"linkId": "name", "answer": [{"valueString": "Somchai"}]},
        {"linkId": "age", "answer": [{"valueInteger": 9}]},
        {"linkId": "smoker", "answer": [{"valueBoolean": True}]},
        {"linkId": "packs", "answer": [{"valueInteger": 1}]},
        {
            "linkId": "colour",
            "answer": [{"valueCoding": {"system": "https://example.org/colours", "code": "red"}}],
        },
        {
            "linkId": "gender",
            "answer": [
                {"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": "male"}}
            ],
        },
        {"linkId": "pet", "answer": [{"valueString": "goldfish"}]},
        {"linkId": "sports", "answer": [{"valueString": "football"}, {"valueString": "takraw"}]},
        {
            "linkId": "household",
            "item": [
                {"linkId": "member", "answer": [{"valueString": "mother"}]},
                {"linkId": "member-age", "answer": [{"valueInteger": 35}]},
            ],
        },
        {"linkId": "household", "item": [{"linkId": "member", "answer": [{"valueString": "sister"}]}]},
    ],
}


def _check(response: dict[str, Any], questionnaire: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    found = {("Questionnaire", Q_URL): questionnaire or QUESTIONNAIRE}
    return [i for i in validate(response, canonicals=found) if i["severity"] == "error"]


def _response(**changes: Any) -> dict[str, Any]:
    r = copy.deepcopy(VALID)
    r.update(changes)
    return r


def _item(r: dict[str, Any], link: str) -> dict[str, Any]:
    return next(i for i in r["item"] if i["linkId"] == link)


def _where(errors: list[dict[str, Any]]) -> list[str]:
    return [e["expression"][0] for e in errors]


def test_a_valid_response_has_no_errors() -> None:
    assert _check(_response()) == []


def test_required_item_missing_when_completed() -> None:
    r = _response()
    r["item"] = [i for i in r["item"] if i["linkId"] != "name"]
    errors = _check(r)
    assert _where(errors) == ["QuestionnaireResponse"]
    assert errors[0]["code"] == "required" and "'name'" in errors[0]["diagnostics"]
    # an in-progress response may still lack required answers
    r["status"] = "in-progress"
    assert _check(r) == []


def test_required_item_present_without_answer() -> None:
    r = _response()
    _item(r, "smoker")["answer"] = []
    del _item(r, "smoker")["answer"]
    errors = _check(r)
    assert "QuestionnaireResponse.item[2]" in _where(errors)
    assert any(e["code"] == "required" and "'smoker'" in e["diagnostics"] for e in errors)


def test_answer_of_the_wrong_type() -> None:
    r = _response()
    _item(r, "age")["answer"] = [{"valueString": "nine"}]
    errors = _check(r)
    assert _where(errors) == ["QuestionnaireResponse.item[1].answer[0].valueString"]
    assert "'age'" in errors[0]["diagnostics"] and "valueInteger" in errors[0]["diagnostics"]


def test_answer_option_must_match() -> None:
    r = _response()
    _item(r, "colour")["answer"] = [
        {"valueCoding": {"system": "https://example.org/colours", "code": "blue"}}
    ]
    errors = _check(r)
    assert _where(errors) == ["QuestionnaireResponse.item[4].answer[0].valueCoding"]
    assert errors[0]["code"] == "code-invalid" and "'colour'" in errors[0]["diagnostics"]
    # same code, other system: not the option either
    _item(r, "colour")["answer"] = [{"valueCoding": {"system": "https://elsewhere.org", "code": "red"}}]
    assert len(_check(r)) == 1


def test_answer_value_set_membership() -> None:
    r = _response()
    _item(r, "gender")["answer"] = [
        {"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": "robot"}}
    ]
    errors = _check(r)
    # not in the answer value set, and not a code of its system either
    assert _where(errors) == [
        "QuestionnaireResponse.item[5].answer[0].valueCoding.code",
        "QuestionnaireResponse.item[5].answer[0].valueCoding",
    ]
    assert "administrative-gender" in errors[1]["diagnostics"]


def test_answer_value_set_contained_in_the_questionnaire() -> None:
    q = copy.deepcopy(QUESTIONNAIRE)
    q["contained"] = [
        {
            "resourceType": "ValueSet",
            "id": "yn",
            "status": "active",
            "compose": {
                "include": [{"system": "https://example.org/yn", "concept": [{"code": "y"}, {"code": "n"}]}]
            },
        }
    ]
    q["item"][5]["answerValueSet"] = "#yn"
    r = _response()
    _item(r, "gender")["answer"] = [{"valueCoding": {"system": "https://example.org/yn", "code": "y"}}]
    assert _check(r, q) == []
    _item(r, "gender")["answer"] = [{"valueCoding": {"system": "https://example.org/yn", "code": "maybe"}}]
    assert _where(_check(r, q)) == ["QuestionnaireResponse.item[5].answer[0].valueCoding"]


def test_open_choice_allows_free_text_but_not_other_types() -> None:
    r = _response()
    _item(r, "pet")["answer"] = [{"valueInteger": 3}]
    assert _where(_check(r)) == ["QuestionnaireResponse.item[6].answer[0].valueInteger"]


def test_string_answer_longer_than_max_length() -> None:
    r = _response()
    _item(r, "name")["answer"] = [{"valueString": "Somchai Jaidee"}]
    errors = _check(r)
    assert _where(errors) == ["QuestionnaireResponse.item[0].answer[0].valueString"]
    assert "maxLength" in errors[0]["diagnostics"]


def test_disabled_item_must_not_be_answered() -> None:
    r = _response()
    _item(r, "smoker")["answer"] = [{"valueBoolean": False}]
    errors = _check(r)
    assert _where(errors) == ["QuestionnaireResponse.item[3]"]
    assert "enableWhen" in errors[0]["diagnostics"] and "'packs'" in errors[0]["diagnostics"]
    # without the answer to the disabled item, its required flag does not apply
    r["item"] = [i for i in r["item"] if i["linkId"] != "packs"]
    assert _check(r) == []


def test_enabled_required_item_must_be_answered() -> None:
    r = _response()
    r["item"] = [i for i in r["item"] if i["linkId"] != "packs"]
    errors = _check(r)
    assert len(errors) == 1 and "'packs'" in errors[0]["diagnostics"] and errors[0]["code"] == "required"


def test_enable_when_is_evaluated_in_its_own_group_instance() -> None:
    r = _response()
    household = [i for i in r["item"] if i["linkId"] == "household"]
    # the second member has no name, so its age question is disabled there (member is required too)
    household[1]["item"] = [{"linkId": "member-age", "answer": [{"valueInteger": 3}]}]
    errors = _check(r)
    assert sorted(_where(errors)) == [
        "QuestionnaireResponse.item[9]",
        "QuestionnaireResponse.item[9].item[0]",
    ]


def test_enable_when_operators() -> None:
    q = copy.deepcopy(QUESTIONNAIRE)
    packs = q["item"][3]
    r = _response()
    _item(r, "age")["answer"] = [{"valueInteger": 15}]
    cases = [
        ({"question": "age", "operator": ">", "answerInteger": 12}, True),
        ({"question": "age", "operator": ">", "answerInteger": 15}, False),
        ({"question": "age", "operator": ">=", "answerInteger": 15}, True),
        ({"question": "age", "operator": "<", "answerInteger": 15}, False),
        ({"question": "age", "operator": "<=", "answerInteger": 15}, True),
        ({"question": "age", "operator": "!=", "answerInteger": 15}, False),
        ({"question": "age", "operator": "!=", "answerInteger": 3}, True),
        ({"question": "name", "operator": "exists", "answerBoolean": False}, False),
        ({"question": "colour", "operator": "=", "answerCoding": {"code": "red"}}, True),
    ]
    for condition, enabled in cases:
        packs["enableWhen"] = [condition]
        errors = _check(r, q)
        assert (errors == []) is enabled, (condition, errors)
    packs["enableWhen"] = [cases[1][0], cases[0][0]]
    packs["enableBehavior"] = "any"
    assert _check(r, q) == []
    packs["enableBehavior"] = "all"
    assert len(_check(r, q)) == 1


def test_non_repeating_item_with_two_answers() -> None:
    r = _response()
    _item(r, "age")["answer"] = [{"valueInteger": 9}, {"valueInteger": 10}]
    assert _where(_check(r)) == ["QuestionnaireResponse.item[1].answer"]


def test_non_repeating_item_given_twice() -> None:
    r = _response()
    r["item"].insert(2, {"linkId": "age", "answer": [{"valueInteger": 10}]})
    errors = _check(r)
    assert _where(errors) == ["QuestionnaireResponse.item[2]"]
    assert "more than once" in errors[0]["diagnostics"]


def test_items_must_follow_the_questionnaire_order() -> None:
    r = _response()
    r["item"][0], r["item"][1] = r["item"][1], r["item"][0]
    errors = _check(r)
    assert _where(errors) == ["QuestionnaireResponse.item[1]"]
    assert "order" in errors[0]["diagnostics"] and "'name'" in errors[0]["diagnostics"]


def test_unknown_link_id_and_wrong_level() -> None:
    r = _response()
    r["item"].append({"linkId": "member", "answer": [{"valueString": "x"}]})
    r["item"].append({"linkId": "nonsense", "answer": [{"valueString": "x"}]})
    errors = _check(r)
    assert _where(errors) == ["QuestionnaireResponse.item[10]", "QuestionnaireResponse.item[11]"]
    assert "not at this level" in errors[0]["diagnostics"]


def test_nested_items_are_checked_under_their_group() -> None:
    r = _response()
    _item(r, "household")["item"][0]["answer"] = [{"valueInteger": 1}]
    assert _where(_check(r)) == ["QuestionnaireResponse.item[8].item[0].answer[0].valueInteger"]


def test_group_and_display_items_take_no_answers() -> None:
    r = _response()
    r["item"].append({"linkId": "thanks", "answer": [{"valueString": "ok"}]})
    assert _where(_check(r)) == ["QuestionnaireResponse.item[10].answer"]


def test_questionnaire_found_contained_in_bundle_and_by_version() -> None:
    r = _response(questionnaire="#q")
    q = copy.deepcopy(QUESTIONNAIRE)
    q["id"] = "q"
    r["contained"] = [q]
    _item(r, "age")["answer"] = [{"valueString": "nine"}]
    errors = [i for i in validate(r) if i["severity"] == "error"]
    assert _where(errors) == ["QuestionnaireResponse.item[1].answer[0].valueString"]

    bad = _response(questionnaire=f"{Q_URL}|2")
    _item(bad, "age")["answer"] = [{"valueString": "nine"}]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:7d3c1f0e-57a3-4b49-9a2c-1d8a3f1e0c11", "resource": QUESTIONNAIRE},
            {"fullUrl": "urn:uuid:2f2c0f3e-9c43-4f3a-8a0f-2b1a7e9d6c22", "resource": bad},
        ],
    }
    errors = [i for i in validate(bundle) if i["severity"] == "error"]
    assert _where(errors) == ["Bundle.entry[1].resource.item[1].answer[0].valueString"]


def test_unknown_questionnaire_is_a_warning_only() -> None:
    issues = [i for i in validate(_response()) if "dom-6" not in i["diagnostics"]]
    assert [i["severity"] for i in issues] == ["warning"]
    assert issues[0]["expression"] == ["QuestionnaireResponse.questionnaire"]


# -- over HTTP ----------------------------------------------------------------------------------------


async def test_writes_and_validate_use_the_stored_questionnaire(client: httpx.AsyncClient) -> None:
    r = await client.post("/Questionnaire", json=QUESTIONNAIRE, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    bad = _response()
    _item(bad, "colour")["answer"] = [
        {"valueCoding": {"system": "https://example.org/colours", "code": "blue"}}
    ]
    r = await client.post("/QuestionnaireResponse", json=bad, headers=FHIR_JSON)
    assert r.status_code == 422
    errors = [i for i in r.json()["issue"] if i["severity"] == "error"]
    assert errors[0]["expression"] == ["QuestionnaireResponse.item[4].answer[0].valueCoding"]
    assert "'colour'" in errors[0]["diagnostics"]
    assert (await client.get("/QuestionnaireResponse")).json().get("total", 0) == 0
    r = await client.post("/QuestionnaireResponse/$validate", json=bad, headers=FHIR_JSON)
    assert r.status_code == 200
    assert ["QuestionnaireResponse.item[4].answer[0].valueCoding"] in [
        i.get("expression") for i in r.json()["issue"]
    ]
    r = await client.post("/QuestionnaireResponse", json=_response(), headers=FHIR_JSON)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("version", ["2", "1"])
async def test_a_versioned_canonical_picks_that_version(client: httpx.AsyncClient, version: str) -> None:
    older = copy.deepcopy(QUESTIONNAIRE)
    older["version"] = "1"
    older["item"] = [i for i in older["item"] if i["linkId"] != "age"]
    for q in (older, QUESTIONNAIRE):
        assert (await client.post("/Questionnaire", json=q, headers=FHIR_JSON)).status_code == 201
    r = await client.post(
        "/QuestionnaireResponse", json=_response(questionnaire=f"{Q_URL}|{version}"), headers=FHIR_JSON
    )
    if version == "2":
        assert r.status_code == 201, r.text
    else:  # version 1 has no 'age' item
        assert r.status_code == 422
        errors = [i for i in r.json()["issue"] if i["severity"] == "error"]
        assert "'age'" in errors[0]["diagnostics"]


async def test_with_auth_the_check_does_not_depend_on_the_callers_scopes(tmp_path: Any) -> None:
    """A social worker allowed to write responses only (no Questionnaire scope) is still checked
    against the Questionnaire an admin published: what a resource is checked against is server-held."""
    from tests.conftest import make_settings, running_app
    from tests.security.conftest import World, agency

    settings = make_settings(tmp_path, auth=True, data_dir=tmp_path / "data")
    async with running_app(settings) as (app, http):
        world = World(app, http, tmp_path)
        admin = await world.caller("admin", "Organization/ops", "admin")
        for oid, kind in (("ops", "district-office"), ("sw", "social-welfare")):
            assert (await admin.put(f"Organization/{oid}", agency(oid, kind))).status_code in (200, 201)
        assert (await admin.post("Questionnaire", QUESTIONNAIRE)).status_code == 201
        worker = await world.caller(
            "worker", "Organization/sw", "social-worker", scopes="system/QuestionnaireResponse.cr"
        )
        assert (await worker.get("Questionnaire")).status_code == 403
        bad = _response()
        _item(bad, "age")["answer"] = [{"valueString": "nine"}]
        r = await worker.post("QuestionnaireResponse", bad)
        assert r.status_code == 422, r.text
        errors = [i for i in r.json()["issue"] if i["severity"] == "error"]
        assert errors[0]["expression"] == ["QuestionnaireResponse.item[1].answer[0].valueString"]
        assert (await worker.post("QuestionnaireResponse", _response())).status_code == 201
