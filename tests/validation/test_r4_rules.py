"""R4 rules the validator enforces beyond the StructureDefinitions: JSON, primitives, narrative, bundles.

Each rule is tested both ways (valid content passes, the violation is refused with its expression),
written from the R4 pages cited in the validator modules (json.html, datatypes.html, narrative.html,
bundle.html).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.validation.validator import validate

FHIR_JSON = {"Content-Type": "application/fhir+json"}
XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'


def _errors(resource: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i["expression"][0], i["diagnostics"]) for i in validate(resource) if i["severity"] == "error"]


def _where(resource: dict[str, Any]) -> list[str]:
    return [e for e, _d in _errors(resource)]


# -- primitives --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ok"),
    [("2015-02-28", True), ("2016-02-29", True), ("2015-02-29", False), ("2015-02-30", False),
     ("2015-04-31", False), ("2015-13-01", False), ("2015", True), ("2015-02", True)],
)  # fmt: skip
def test_dates_must_exist_in_the_calendar(value: str, ok: bool) -> None:
    assert _where({"resourceType": "Patient", "birthDate": value}) == ([] if ok else ["Patient.birthDate"])


def test_date_times_and_instants_too() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    assert _where({**obs, "effectiveDateTime": "2021-06-31T10:00:00+07:00"}) == [
        "Observation.effectiveDateTime"
    ]
    assert _where({**obs, "effectiveDateTime": "2021-06-30T10:00:00+07:00"}) == []
    assert _where({**obs, "issued": "2019-02-29T10:00:00Z"}) == ["Observation.issued"]


@pytest.mark.parametrize("rid", ["a_b", "a b", "", "x" * 65, "é"])
def test_resource_ids_follow_the_id_datatype(rid: str) -> None:
    assert "Patient.id" in _where({"resourceType": "Patient", "id": rid})


def test_valid_ids_and_ids_inside_bundles() -> None:
    assert _where({"resourceType": "Patient", "id": "Ab-1.2"}) == []
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0",
                "resource": {"resourceType": "Patient", "id": "a b"},
            }
        ],
    }
    assert _where(bundle) == ["Bundle.entry[0].resource.id"]


def test_strings_over_one_megabyte() -> None:
    limit = 1024 * 1024
    assert _where({"resourceType": "Patient", "name": [{"text": "x" * limit}]}) == []
    assert _where({"resourceType": "Patient", "name": [{"text": "x" * (limit + 1)}]}) == [
        "Patient.name[0].text"
    ]


def test_decimals_must_be_json_numbers() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    assert _where({**obs, "valueQuantity": {"value": 1.50}}) == []
    assert _where({**obs, "valueQuantity": {"value": "1.50"}}) == ["Observation.valueQuantity.value"]


# -- JSON rules --------------------------------------------------------------------------------------


def test_empty_arrays_objects_and_strings_are_refused() -> None:
    assert _where({"resourceType": "Patient", "name": []}) == ["Patient.name"]
    assert _where({"resourceType": "Patient", "name": [{"given": []}]}) == ["Patient.name[0].given"]
    assert _where({"resourceType": "Patient", "meta": {}}) == ["Patient.meta"]
    assert _where({"resourceType": "Patient", "gender": ""}) == ["Patient.gender"]
    assert _where({"resourceType": "Patient", "name": [{"family": ""}]}) == ["Patient.name[0].family"]


async def test_duplicate_json_keys_are_refused(client: httpx.AsyncClient) -> None:
    body = b'{"resourceType":"Patient","name":[{"family":"Jaidee","family":"Rakthai"}],"gender":"male"}'
    r = await client.post("/Patient", content=body, headers=FHIR_JSON)
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Patient.name[0].family"]
    assert (await client.get("/Patient")).json().get("total", 0) == 0
    # the same key in two different objects is fine, and so is ": inside a string
    ok = b'{"resourceType":"Patient","name":[{"family":"A"},{"family":"B","text":"x\\": y"}]}'
    assert (await client.post("/Patient", content=ok, headers=FHIR_JSON)).status_code == 201


async def test_a_utf8_byte_order_mark_is_accepted(client: httpx.AsyncClient) -> None:
    body = "\ufeff".encode() + '{"resourceType":"Patient","name":[{"family":"ใจดี"}]}'.encode()
    r = await client.post("/Patient", content=body, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    stored = await client.get(f"/Patient/{r.json()['id']}")
    assert stored.json()["name"][0]["family"] == "ใจดี"


async def test_an_impossible_birth_date_is_refused_over_http(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/Patient", json={"resourceType": "Patient", "birthDate": "2015-02-30"}, headers=FHIR_JSON
    )
    assert r.status_code == 422
    assert [i["expression"] for i in r.json()["issue"] if i["severity"] == "error"] == [["Patient.birthDate"]]


# -- narrative ---------------------------------------------------------------------------------------


def _narrative(div: str) -> list[str]:
    return [d for _e, d in _errors({"resourceType": "Patient", "text": {"status": "generated", "div": div}})]


@pytest.mark.parametrize(
    "div",
    [
        f"<div {XHTML}>Somchai</div>",
        f'<div {XHTML}><p>a <b>b</b></p><table border="1"><tr><td colspan="2">x</td></tr></table></div>',
        f'<div {XHTML}><a href="https://example.org/x" name="n">link</a><img src="#pic" alt="x"/></div>',
        f'<div {XHTML}><img src="data:image/png;base64,iVBORw0KGgo="/></div>',
        f'<div {XHTML}><span style="color: red" class="c" title="t" lang="th">สวัสดี</span></div>',
    ],
)
def test_allowed_narrative(div: str) -> None:
    assert _narrative(div) == []


@pytest.mark.parametrize(
    ("div", "says"),
    [
        (f"<div {XHTML}><script>alert(1)</script>x</div>", "<script>"),
        (f'<div {XHTML}><p onclick="steal()">x</p></div>', "event handler"),
        (f'<div {XHTML}><img src="x" onerror="steal()"/></div>', "event handler"),
        (f'<div {XHTML}><a href="javascript:steal()">x</a></div>', "javascript:"),
        (f'<div {XHTML}><a href=" JaVaScRiPt:steal()">x</a></div>', "scheme"),
        (f'<div {XHTML}><a href="data:text/html,&lt;script&gt;">x</a></div>', "data:"),
        (f'<div {XHTML}><iframe src="https://evil.example"/>x</div>', "<iframe>"),
        (f"<div {XHTML}><form><input/></form>x</div>", "<form>"),
        (f'<div {XHTML}><p style="background:url(javascript:steal())">x</p></div>', "active content"),
        (f"<div {XHTML}><marquee>x</marquee></div>", "<marquee>"),
        (f"<div {XHTML}><ins>x</ins></div>", "<ins>"),
        (f'<div {XHTML}><p foo="1">x</p></div>', "foo"),
        (
            '<!DOCTYPE div [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><div ' + XHTML + ">&xxe;</div>",
            "DOCTYPE",
        ),
        (f"<div {XHTML}><p>unclosed</div>", "well-formed"),
        (f"<div {XHTML}>&nbsp;</div>", "well-formed"),
        ("<div>no namespace</div>", "XHTML namespace"),
        (f"<p {XHTML}>not a div</p>", "root element"),
        (f"<div {XHTML}>  \n </div>", "txt-2"),
    ],
)
def test_refused_narrative(div: str, says: str) -> None:
    problems = _narrative(div)
    assert problems, div
    assert any(says in p for p in problems), problems


async def test_stored_xss_is_refused_over_http(client: httpx.AsyncClient) -> None:
    patient = {
        "resourceType": "Patient",
        "text": {"status": "generated", "div": f'<div {XHTML}><img src="x" onerror="alert(1)"/></div>'},
    }
    r = await client.post("/Patient", json=patient, headers=FHIR_JSON)
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Patient.text.div"]


# -- bundles -----------------------------------------------------------------------------------------

PATIENT = {"resourceType": "Patient", "id": "a"}


def _bundle(kind: str, *entries: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries), **extra}


def test_a_consistent_bundle_passes() -> None:
    assert (
        _where(_bundle("collection", {"fullUrl": "https://x.org/fhir/Patient/a", "resource": PATIENT})) == []
    )
    assert (
        _where(
            _bundle(
                "collection",
                {"fullUrl": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", "resource": PATIENT},
            )
        )
        == []
    )
    assert _where(_bundle("collection", {"fullUrl": "urn:oid:1.2.3.4", "resource": PATIENT})) == []


@pytest.mark.parametrize(
    "full", ["Patient/a", "a", "urn:uuid:1234", "urn:oid:1.2.x", "https://x.org/fhir/Patient/b"]
)
def test_bad_full_urls(full: str) -> None:
    assert _where(_bundle("collection", {"fullUrl": full, "resource": PATIENT})) == [
        "Bundle.entry[0].fullUrl"
    ]


def test_duplicate_full_urls_and_ids() -> None:
    same = {"fullUrl": "https://x.org/fhir/Patient/a", "resource": PATIENT}
    assert "Bundle" in _where(_bundle("collection", same, same))  # bdl-7
    twice = _bundle(
        "transaction",
        {"resource": PATIENT, "request": {"method": "PUT", "url": "Patient/a"}},
        {"resource": PATIENT, "request": {"method": "PUT", "url": "Patient/a"}},
    )
    assert _where(twice) == ["Bundle.entry[1].resource"]
    # the same id on two servers is two resources; two versions of one resource in a history are fine
    two_servers = _bundle(
        "collection",
        {"fullUrl": "https://x.org/fhir/Patient/a", "resource": PATIENT},
        {"fullUrl": "https://y.org/fhir/Patient/a", "resource": PATIENT},
    )
    assert _where(two_servers) == []


def test_searchset_rules() -> None:
    match = {"fullUrl": "https://x.org/fhir/Patient/a", "resource": PATIENT, "search": {"mode": "match"}}
    assert _where(_bundle("searchset", match, total=1)) == []
    assert _where(_bundle("searchset", match, total=0)) == ["Bundle.total"]
    no_url = {"resource": PATIENT, "search": {"mode": "match"}}
    assert _where(_bundle("searchset", no_url, total=1)) == ["Bundle.entry[0]"]
    outcome = {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "processing"}],
        },
        "search": {"mode": "outcome"},
    }
    assert _where(_bundle("searchset", match, outcome, total=1)) == []
    assert "Bundle" in _where(_bundle("collection", match))  # bdl-2: search only in a searchset


# -- core rules: vital signs, code systems, attachments ---------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz"


def _example(name: str) -> dict[str, Any]:
    import json
    import tarfile

    with tarfile.open(EXAMPLES) as tar:
        member = tar.extractfile(f"package/{name}")
        assert member is not None
        return json.load(member)


def test_vital_signs_observations_follow_their_profile() -> None:
    heart_rate = _example("Observation-heart-rate.json")
    assert _where(heart_rate) == []
    del heart_rate["valueQuantity"]["code"]  # heartrate fixes the UCUM code /min
    assert _where(heart_rate) == ["Observation.valueQuantity.code"]
    # the same observation outside the vital-signs category (and claiming no profile) is not a vital sign
    heart_rate["category"] = [{"text": "other"}]
    del heart_rate["meta"]
    assert _where(heart_rate) == []


def test_the_blood_pressure_example_matches_its_component_slices() -> None:
    bp = _example("Observation-blood-pressure.json")
    assert _where(bp) == []
    assert [
        i for i in validate(bp, ["http://hl7.org/fhir/StructureDefinition/bp"]) if i["severity"] == "error"
    ] == []
    bp["component"][1]["code"]["coding"][0]["code"] = "0000-0"  # no diastolic component any more
    assert _where(bp) == ["Observation.component"]


def test_codes_must_exist_in_the_core_code_systems_we_hold() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    category = {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}
    assert _where({**obs, "category": [{"coding": [category]}]}) == []
    wrong = {**category, "code": "labs"}
    assert _where({**obs, "category": [{"coding": [wrong]}]}) == ["Observation.category[0].coding[0].code"]
    # a required binding names the element itself
    assert _where({**obs, "status": "done"}) == ["Observation.status"]


def test_attachment_size_and_hash_agree_with_the_data() -> None:
    import base64
    import hashlib

    content = "ผลตรวจ".encode()
    data = base64.b64encode(content).decode()
    sha1 = base64.b64encode(hashlib.sha1(content).digest()).decode()

    def doc(**attachment: Any) -> dict[str, Any]:
        return {
            "resourceType": "DocumentReference",
            "status": "current",
            "content": [{"attachment": {"contentType": "text/plain", "data": data, **attachment}}],
        }

    assert _where(doc(size=len(content), hash=sha1)) == []
    assert _where(doc(size=len(content) + 1)) == ["DocumentReference.content[0].attachment.size"]
    assert _where(doc(hash=base64.b64encode(hashlib.sha1(b"other").digest()).decode())) == [
        "DocumentReference.content[0].attachment.hash"
    ]


# -- conformance resources ----------------------------------------------------------------------------


def _search_parameter(**fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter",
        "url": "https://example.org/SearchParameter/x",
        "name": "X",
        "status": "active",
        "description": "x",
        "code": "x",
        "base": ["Patient"],
        "type": "token",
        "expression": "Patient.gender",
        **fields,
    }


def test_search_parameter_rules() -> None:
    assert _where(_search_parameter()) == []
    assert _where(_search_parameter(type="date")) == ["SearchParameter.type"]
    assert _where(_search_parameter(expression="Patient.nickname")) == ["SearchParameter.expression"]
    assert _where(
        _search_parameter(
            base=["Observation"], type="quantity", expression="Observation.value.as(Attachment)"
        )
    ) == ["SearchParameter.expression"]
    assert (
        _where(
            _search_parameter(
                base=["Observation"], type="quantity", expression="(Observation.value as Quantity)"
            )
        )
        == []
    )
    assert _where(
        _search_parameter(base=["Observation"], type="quantity", expression="Observation.value.as(Period)")
    ) == ["SearchParameter.type"]
    assert _where(_search_parameter(type="composite", expression="Patient")) == ["SearchParameter.component"]


def test_code_system_rules() -> None:
    cs = {
        "resourceType": "CodeSystem",
        "url": "https://example.org/CodeSystem/x",
        "status": "active",
        "content": "complete",
        "count": 2,
        "property": [{"code": "order", "type": "integer"}],
        "concept": [{"code": "a", "property": [{"code": "order", "valueInteger": 1}]}, {"code": "b"}],
    }
    assert _where(cs) == []
    assert _where({**cs, "count": 3}) == ["CodeSystem.count"]
    bad = copy.deepcopy(cs)
    bad["concept"][0]["property"] = [{"code": "colour", "valueString": "red"}]
    assert _where(bad) == ["CodeSystem.concept[0].property[0].code"]
    bad["concept"][0]["property"] = [{"code": "order", "valueString": "1"}]
    assert _where(bad) == ["CodeSystem.concept[0].property[0].valueString"]
    bad["concept"][1]["code"] = "a"
    assert "CodeSystem" in _where(bad)  # csd-1: codes are unique


def test_capability_statement_rules() -> None:
    base = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2024-01-01",
        "kind": "instance",
        "implementation": {"description": "x"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {
                        "type": "Patient",
                        "supportedProfile": ["http://hl7.org/fhir/StructureDefinition/Patient"],
                        "searchParam": [
                            {
                                "name": "birthdate",
                                "definition": "http://hl7.org/fhir/SearchParameter/individual-birthdate",
                                "type": "date",
                            }
                        ],
                    }
                ],
            }
        ],
    }
    assert _where(base) == []
    wrong_type = copy.deepcopy(base)
    wrong_type["rest"][0]["resource"][0]["searchParam"][0]["type"] = "string"
    assert _where(wrong_type) == ["CapabilityStatement.rest[0].resource[0].searchParam[0].type"]
    wrong_profile = copy.deepcopy(base)
    wrong_profile["rest"][0]["resource"][0]["supportedProfile"] = [
        "http://hl7.org/fhir/StructureDefinition/Observation"
    ]
    assert _where(wrong_profile) == ["CapabilityStatement.rest[0].resource[0].supportedProfile[0]"]
    twice = copy.deepcopy(base)
    twice["rest"].append(copy.deepcopy(base["rest"][0]))
    assert _where(twice) == ["CapabilityStatement.rest[1].mode"]
