"""Each request that once answered HTTP 500 (issue 13's fuzzing run) now answers 4xx with an
OperationOutcome, with auth off and on, and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.hostile.conftest import Api

HUGE_DIGITS = "9" * 4301
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def assert_refused(reply: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text[:500])
    if statuses:
        assert reply.status_code in statuses, (reply.status_code, reply.text[:500])
    assert reply.headers["content-type"].startswith("application/fhir+json")
    body = reply.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"] and all(i["severity"] in ("error", "fatal") for i in body["issue"][:1])
    assert "Traceback" not in reply.text and "Internal error" not in reply.text
    return body


def _extension_chain(depth: int) -> dict[str, Any]:
    ext: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(depth):
        ext = {"url": "http://example.org/node", "extension": [ext]}
    return {"resourceType": "Patient", "extension": [ext]}


def _contained_chain(depth: int) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": "c0"}
    for n in range(1, depth + 1):
        resource = {
            "resourceType": "Patient",
            "id": f"c{n}",
            "contained": [resource],
            "link": [{"other": {"reference": f"#c{n - 1}"}, "type": "seealso"}],
        }
    return resource


def _transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


async def test_vread_of_a_version_beyond_64_bits(api: Api) -> None:
    pid = await api.patient()
    for version in ("9223372036854775808", "9223372036854775807", HUGE_DIGITS, "0", "-1"):
        assert_refused(await api.request("GET", f"Patient/{pid}/_history/{version}"), 404)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_if_match_of_4301_digits(api: Api, method: str) -> None:
    pid = await api.patient()
    kwargs: dict[str, Any] = {}
    if method == "PUT":
        kwargs["json"] = {"resourceType": "Patient", "id": pid, "active": True}
    if method == "PATCH":
        kwargs["json"] = [{"op": "add", "path": "/active", "value": True}]
    for value in (HUGE_DIGITS, f'W/"{HUGE_DIGITS}"', 'W/"99999999999999999999"'):
        headers = {"If-Match": value, **(JSON_PATCH if method == "PATCH" else {})}
        assert_refused(await api.request(method, f"Patient/{pid}", headers=headers, **kwargs), 400, 412)
    assert (await api.request("GET", f"Patient/{pid}")).json()["meta"]["versionId"] == "1"


async def test_if_match_of_4301_digits_in_a_bundle(api: Api) -> None:
    pid = await api.patient()
    put = {
        "resource": {"resourceType": "Patient", "id": pid, "active": True},
        "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": HUGE_DIGITS},
    }
    assert_refused(await api.request("POST", "", json=_transaction(put)), 400, 412)
    batch = await api.request("POST", "", json=_transaction(put, kind="batch"))
    assert batch.status_code == 200, batch.text
    entry = batch.json()["entry"][0]["response"]
    assert entry["status"].split()[0] in ("400", "412")
    assert entry["outcome"]["resourceType"] == "OperationOutcome"
    assert (await api.request("GET", f"Patient/{pid}")).json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Patient", "": 1},
        {"resourceType": "Patient", "name": [{"": "x", "family": "A"}]},
        {"resourceType": "Patient", "_": {"id": "a"}},
        {"resourceType": "Patient", "birthDate": "2020-01-01", "_birthDate": {"": 1}},
        {
            "resourceType": "Patient",
            "extension": [{"url": "http://example.org/x", "": "a", "valueString": "b"}],
        },
        {"resourceType": "Patient", "contained": [{"resourceType": "Patient", "": 2}]},
    ],
    ids=["top", "nested", "underscore", "companion", "extension", "contained"],
)
async def test_empty_member_name(api: Api, body: dict[str, Any]) -> None:
    reply = assert_refused(await api.request("POST", "Patient", json=body), 400, 422)
    assert reply["issue"][0].get("expression")


@pytest.mark.parametrize("code", [{"a": 1}, [1, 2], ["x"], None, 3.5, True])
async def test_coding_code_of_the_wrong_json_type(api: Api, code: Any) -> None:
    pid = await api.patient()
    coding = {"system": "http://loinc.org", "code": code}
    for body in (
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [coding]},
            "subject": {"reference": f"Patient/{pid}"},
        },
        {"resourceType": "Patient", "id": pid, "maritalStatus": {"coding": [coding]}},
        {  # the Thai growth profile's own rules read LOINC codes too
            "resourceType": "Observation",
            "meta": {"profile": ["https://termtem.org/fhir/StructureDefinition/th-growth-observation"]},
            "status": "final",
            "code": {"coding": [coding]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2024-03-20",
            "valueQuantity": {
                "value": 12.4,
                "unit": "kg",
                "system": "http://unitsofmeasure.org",
                "code": "kg",
            },
        },
    ):
        method, url = (
            ("PUT", f"Patient/{pid}") if body["resourceType"] == "Patient" else ("POST", "Observation")
        )
        assert_refused(await api.request(method, url, json=body), 400, 422)
        search = await api.request("GET", f"Observation?code={code}")
        assert search.status_code in (200, 400), search.text


@pytest.mark.parametrize("coding", [5, True, "text", {"code": "x"}, [[1]], [5], [None]])
async def test_coding_of_the_wrong_json_type(api: Api, coding: Any) -> None:
    pid = await api.patient()
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": coding},
        "subject": {"reference": f"Patient/{pid}"},
    }
    assert_refused(await api.request("POST", "Observation", json=body), 400, 422)
    body = {"resourceType": "Patient", "id": pid, "maritalStatus": {"coding": coding}}
    assert_refused(await api.request("PUT", f"Patient/{pid}", json=body), 400, 422)


async def test_extensions_nested_317_deep(api: Api) -> None:
    assert_refused(await api.request("POST", "Patient", json=_extension_chain(317)), 400, 422)


async def test_contained_nested_127_deep(api: Api) -> None:
    assert_refused(await api.request("POST", "Patient", json=_contained_chain(127)), 400, 422)


@pytest.mark.parametrize("mode", [["create"], {"a": 1}, 5, None, True])
async def test_validate_with_mode_of_the_wrong_type(api: Api, mode: Any) -> None:
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "mode", "valueCode": mode},
            {"name": "resource", "resource": {"resourceType": "Patient"}},
        ],
    }
    assert_refused(await api.request("POST", "Patient/$validate", json=params), 400)


@pytest.mark.parametrize("kind", ["transaction", "batch"])
@pytest.mark.parametrize("resource", [None, 5, "Patient", [{"resourceType": "Patient"}]])
async def test_bundle_entry_whose_resource_is_not_an_object(api: Api, kind: str, resource: Any) -> None:
    """A malformed entry is refused with the whole bundle (batch too): it names the entry."""
    bundle = _transaction({"resource": resource, "request": {"method": "POST", "url": "Patient"}}, kind=kind)
    outcome = assert_refused(await api.request("POST", "", json=bundle), 400)
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[0]"]


@pytest.mark.parametrize(
    "member", ["method", "url", "ifMatch", "ifNoneMatch", "ifNoneExist", "ifModifiedSince"]
)
@pytest.mark.parametrize("value", [["POST"], {"a": 1}, 5, True])
async def test_bundle_request_members_of_the_wrong_json_type(api: Api, member: str, value: Any) -> None:
    request = {"method": "PUT", "url": "Patient/p1", member: value}
    bundle = _transaction({"resource": {"resourceType": "Patient", "id": "p1"}, "request": request})
    outcome = assert_refused(await api.request("POST", "", json=bundle), 400)
    assert outcome["issue"][0]["expression"] == [f"Bundle.entry[0].request.{member}"]
    assert (await api.request("GET", "Patient/p1")).status_code == 404


@pytest.mark.parametrize("entry", [5, True, "x", {"resource": None}, [5], [None]])
async def test_collection_bundle_with_malformed_entry(api: Api, entry: Any) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entry}
    assert_refused(await api.request("POST", "Bundle", json=bundle), 400, 422)


@pytest.mark.parametrize("contained", [5, True, "x", {"resourceType": "Patient"}, [5], [None], [[]]])
async def test_contained_of_the_wrong_json_type(api: Api, contained: Any) -> None:
    body = {"resourceType": "Patient", "contained": contained}
    assert_refused(await api.request("POST", "Patient", json=body), 400, 422)


@pytest.mark.parametrize("rtype", [["Patient"], {"a": "Patient"}, 5, None, "", "Unicorn"])
async def test_contained_resource_type_of_the_wrong_json_type(api: Api, rtype: Any) -> None:
    body = {
        "resourceType": "Patient",
        "contained": [{"resourceType": rtype, "id": "a"}],
        "link": [{"other": {"reference": "#a"}, "type": "seealso"}],
    }
    assert_refused(await api.request("POST", "Patient", json=body), 400, 422)
    bundle = _transaction({"resource": body, "request": {"method": "POST", "url": "Patient"}})
    assert_refused(await api.request("POST", "", json=bundle), 400, 422)
