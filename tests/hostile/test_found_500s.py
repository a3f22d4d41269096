"""Requests beyond issue 13's list that answered HTTP 500, found by probing and by the fuzz suite; each
now answers 4xx with an OperationOutcome (or succeeds), with auth off and on."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from tests.hostile.conftest import Api
from tests.hostile.test_known_500s import assert_refused
from tests.security.conftest import TOKEN_URL

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.mark.parametrize("bound", ["ap0001", "ap9999", "ap0001-01-01T00:00:00Z", "ap9999-12-31"])
async def test_approximate_dates_at_the_ends_of_time(api: Api, bound: str) -> None:
    reply = await api.request("GET", f"Patient?_lastUpdated={bound}")
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize(
    "value_set",
    [
        {"compose": 5},
        {"compose": {"include": 5}},
        {"compose": {"include": [{"system": 5}]}},
        {"compose": {"include": [{"valueSet": [5]}]}},
        {"compose": {"include": [{"system": "http://x", "concept": [{"code": 5}]}]}},
        {"compose": {"include": [{"system": "http://x", "filter": [{"op": 5}]}]}},
    ],
)
async def test_expand_of_a_malformed_inline_value_set(api: Api, value_set: dict[str, Any]) -> None:
    inline = orjson.dumps({"resourceType": "ValueSet", "status": "active", **value_set}).decode()
    assert_refused(await api.request("GET", f"ValueSet/$expand?valueSet={inline}"), 400)
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "valueSet", "resource": orjson.loads(inline)}],
    }
    assert_refused(await api.request("POST", "ValueSet/$expand", json=params), 400)


@pytest.mark.parametrize(
    "url",
    [
        'CodeSystem/$lookup?coding={"system":5,"code":[1]}',
        'CodeSystem/$subsumes?codingA={"code":5}&codingB={"code":"x"}',
        'ConceptMap/$translate?coding={"code":{}}&url=http://x',
        "ValueSet/$validate-code?url=http://hl7.org/fhir/ValueSet/administrative-gender"
        '&codeableConcept={"coding":5}',
        "ValueSet/$validate-code?url=http://hl7.org/fhir/ValueSet/administrative-gender"
        '&codeableConcept={"coding":[5,{"code":[1]}]}',
    ],
)
async def test_terminology_parameters_of_the_wrong_shape(api: Api, url: str) -> None:
    assert_refused(await api.request("GET", url), 400)


@pytest.mark.parametrize("path", ["/name/²", "/name/" + "9" * 4301, "/name/01", "/name/0/given/٣"])
async def test_json_patch_array_index_that_is_not_ascii_digits(api: Api, path: str) -> None:
    pid = await api.patient()
    patch = [{"op": "add", "path": path, "value": {"family": "x"}}]
    assert_refused(await api.request("PATCH", f"Patient/{pid}", json=patch, headers=JSON_PATCH), 400, 422)


@pytest.mark.parametrize(
    "parameters",
    [
        {"parameter": 5},
        {"parameter": {"a": None}},
        {"parameter": [{"name": "operation", "part": 5}]},
        {"parameter": [{"name": "operation", "part": [{"name": 5, "valueString": "x"}]}]},
        {
            "parameter": [
                {
                    "name": "operation",
                    "part": [
                        {"name": "type", "valueCode": "add"},
                        {"name": "path", "valueString": "Patient"},
                        {"name": "name", "valueString": "contact"},
                        {"name": "value", "part": [{"name": 5}]},
                    ],
                }
            ]
        },
        {
            "parameter": [
                {
                    "name": "operation",
                    "part": [{"name": "path", "valueString": "Patient.name[" + "9" * 50 + "]"}],
                }
            ]
        },
    ],
)
async def test_fhirpath_patch_parameters_of_the_wrong_shape(api: Api, parameters: dict[str, Any]) -> None:
    pid = await api.patient()
    body = {"resourceType": "Parameters", **parameters}
    assert_refused(await api.request("PATCH", f"Patient/{pid}", json=body), 400, 422)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "PATCH", "url": f"Patient/{pid}"}, "resource": body}],
    }
    reply = await api.request("POST", "", json=bundle)
    assert reply.status_code == 200, reply.text
    assert reply.json()["entry"][0]["response"]["status"][:3] in ("400", "422")


@pytest.mark.parametrize("profile", [5, "http://x", {"a": 1}, [5, {"a": 1}]])
async def test_meta_profile_of_the_wrong_json_type(api: Api, profile: Any) -> None:
    body = {"resourceType": "Patient", "meta": {"profile": profile}}
    assert_refused(await api.request("POST", "Patient", json=body), 400, 422)
    reply = await api.request("POST", "Patient/$validate", json=body)
    assert reply.status_code == 200 and reply.json()["resourceType"] == "OperationOutcome", reply.text
    assert any(i["severity"] == "error" for i in reply.json()["issue"])


@pytest.mark.parametrize("id_", [["p2"], {"a": 1}, 5])
async def test_conditional_update_whose_body_id_is_not_a_string(api: Api, id_: Any) -> None:
    body = {"resourceType": "Patient", "id": id_}
    assert_refused(await api.request("PUT", "Patient?name=nobody-has-this-name", json=body), 400, 422)


@pytest.mark.parametrize("path", ["%0A0", "Patient/%0Ax/y", "%0D%0A"])
async def test_paths_no_route_takes_answer_an_operation_outcome(api: Api, path: str) -> None:
    assert_refused(await api.request("GET", path), 404)


def _segment(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


@pytest.mark.parametrize("header", [{"alg": "ES256", "crit": [5]}, {"alg": "ES384", "crit": [5]}])
async def test_a_token_whose_header_lists_numbers_as_critical(api: Api, header: dict[str, Any]) -> None:
    """The JOSE library raised TypeError on such a header, before checking any signature."""
    forged = f"{_segment(header)}.{_segment({'iss': 'hospital', 'sub': 'hospital'})}.c2ln"
    reply = await api.http.get("Patient", headers={"Authorization": f"Bearer {forged}"})
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": forged,
        "scope": "system/*.rs",
    }
    token_reply = await api.http.post(TOKEN_URL, data=form)
    if api.token is None:  # auth off: the header is not read, and there is no token endpoint
        assert reply.status_code == 200, reply.text
        assert_refused(token_reply, 404)
        return
    assert_refused(reply, 401)
    assert token_reply.status_code in (400, 401) and token_reply.json()["error"] == "invalid_client"


@pytest.mark.parametrize("form", [b"name=\xff\xfe", b"\xff", b"name=%ff", b"\xc3\x28=1"])
async def test_post_search_with_a_form_body_that_is_not_utf8(api: Api, form: bytes) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    for url in ("Patient/_search", "_search"):
        reply = await api.request("POST", url, content=form, headers=headers)
        if form == b"name=%ff":  # percent-encoded bytes are read leniently, as in a query string
            assert reply.status_code == 200, reply.text
        else:
            assert_refused(reply, 400)


def _cursor(data: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        {"k": [{"a": 1}], "r": 1, "d": "n"},
        {"k": [[1]], "r": 1},
        {"k": ["x"], "r": 1, "d": 5},
        {"k": [], "r": True},
    ],
)
@pytest.mark.parametrize("sort", ["birthdate", "-_lastUpdated", "name"])
async def test_a_forged_search_cursor(api: Api, cursor: dict[str, Any], sort: str) -> None:
    reply = await api.request("GET", f"Patient?_sort={sort}&_cursor={_cursor(cursor)}")
    outcome = assert_refused(reply, 400)
    assert outcome["issue"][0]["expression"] == ["_cursor"]


@pytest.mark.parametrize("value", ["%C2%B2", "%D9%A3", "99999999999999999999", "9" * 4301, "-1", "1.5"])
async def test_history_page_and_count_that_are_not_plain_digits(api: Api, value: str) -> None:
    pid = await api.patient()
    for query in (f"_page={value}", f"_count={value}"):
        reply = await api.request("GET", f"Patient/{pid}/_history?{query}")
        assert reply.status_code in (200, 400), reply.text
        if reply.status_code == 400:
            assert_refused(reply, 400)


@pytest.mark.parametrize("limit", ["²", "9" * 4301, "-1", "0", "1.5"])
async def test_view_run_limit_that_is_not_a_plain_positive_number(api: Api, limit: str) -> None:
    view = {
        "resourceType": "ViewDefinition",
        "status": "active",
        "resource": "Patient",
        "select": [{"column": [{"path": "id", "name": "id"}]}],
    }
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "viewResource", "resource": view}, {"name": "_limit", "valueString": limit}],
    }
    assert_refused(await api.request("POST", "ViewDefinition/$viewdefinition-run", json=params), 400, 403)


@pytest.mark.parametrize(
    "body",
    [
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "questionnaire": "#q",
            "contained": 5,
        },
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "questionnaire": "#q",
            "contained": {"a": 1},
        },
        {"resourceType": "Parameters", "parameter": 5},
        {"resourceType": "Bundle", "type": "collection", "entry": {"resource": {"resourceType": "Patient"}}},
        {
            "resourceType": "SearchParameter",
            "url": "https://example.org/SearchParameter/hostile",
            "name": "hostile",
            "status": "draft",
            "description": "x",
            "code": "hostile",
            "base": 5,
            "type": "string",
            "expression": "Patient.name",
        },
    ],
    ids=[
        "qr-contained-number",
        "qr-contained-object",
        "parameters",
        "bundle-entry-object",
        "searchparameter-base",
    ],
)
async def test_arrays_that_are_not_arrays_before_validation(api: Api, body: dict[str, Any]) -> None:
    """Looked at before validation (canonicals to prefetch, conformance rules), so never trusted."""
    assert_refused(await api.request("POST", body["resourceType"], json=body), 400, 403, 422)
    reply = await api.request("POST", f"{body['resourceType']}/$validate", json=body)
    assert reply.status_code in (200, 400, 403), reply.text
