"""The de-identification rules one by one (the method in docs/deidentification.md)."""

from __future__ import annotations

from typing import Any

from fhir_server.export import kanon
from fhir_server.export.deid import SUPPRESSED, Deidentifier, child_of, is_cid, shift_date
from fhir_server.export.pseudonyms import MAX_SHIFT_DAYS, Pseudonymiser

KEY = b"k" * 32


def _deid(key: bytes = KEY) -> Deidentifier:
    return Deidentifier(Pseudonymiser(key))


def test_dates_move_by_whole_days_and_partial_dates_stay() -> None:
    assert shift_date("2024-02-28", 2) == "2024-03-01"
    assert shift_date("2024-02-28T10:11:12.5+07:00", -30) == "2024-01-29T10:11:12.5+07:00"
    assert shift_date("2024-02", 10) == "2024-02" and shift_date("2024", 10) == "2024"
    assert shift_date("not a date", 3) == "not a date"
    offsets = {Pseudonymiser(KEY).offset_days(f"child{n}") for n in range(500)}
    assert 0 not in offsets and min(offsets) == -MAX_SHIFT_DAYS and max(offsets) == MAX_SHIFT_DAYS


def test_cid_detection() -> None:
    valid = "110370000001" + str((11 - sum(int("110370000001"[i]) * (13 - i) for i in range(12)) % 11) % 10)
    assert is_cid(valid) and not is_cid(valid[:-1] + str((int(valid[-1]) + 1) % 10)) and not is_cid("12345")


def test_everything_identifying_goes_and_references_are_pseudonyms() -> None:
    deid = _deid()
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "meta": {
            "versionId": "3",
            "lastUpdated": "2024-01-01T00:00:00Z",
            "profile": ["http://p"],
            "tag": [{"system": "https://termtem.org/fhir/tag/writing-agency", "code": "Organization/h"}],
        },
        "text": {"status": "generated", "div": "<div>Somchai</div>"},
        "identifier": [{"system": "s", "value": "REF-1"}],
        "requisition": {"system": "s", "value": "REQ-9"},
        "status": "active",
        "intent": "order",
        "code": {
            "coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "referral"}],
            "text": "refer Somchai to Dr. Anan",
        },
        "subject": {"reference": "Patient/p1", "display": "Somchai Jaidee"},
        "requester": {"reference": "http://x/fhir/Organization/o1"},
        "performer": [{"reference": "#c1"}, {"identifier": {"value": "1234"}}],
        "authoredOn": "2024-03-10T09:00:00+07:00",
        "note": [{"text": "mother called"}],
        "patientInstruction": "bring the yellow book",
        "extension": [
            {"url": "u1", "valueString": "free text"},
            {"url": "u2", "valueBoolean": True},
            {"url": "u3", "valueHumanName": {"family": "Maidenname"}},
            {"url": "u4", "valueAddress": {"line": ["99 Sukhumvit"], "city": "Khlong Toei"}},
            {"url": "u5", "valueContactPoint": {"system": "phone", "value": "0899999999"}},
        ],
        "contained": [{"resourceType": "Practitioner", "id": "c1", "name": [{"family": "Anan"}]}],
    }
    out = deid.resource(resource, "p1")
    days = Pseudonymiser(KEY).offset_days("p1")
    assert out["id"] == Pseudonymiser(KEY).reference("ServiceRequest", "sr1")
    assert out["subject"] == {"reference": f"Patient/{Pseudonymiser(KEY).child('p1')}"}
    assert out["requester"] == {
        "reference": f"Organization/{Pseudonymiser(KEY).reference('Organization', 'o1')}"
    }
    assert out["performer"] == [{"reference": "#c1"}]
    assert out["contained"] == [{"resourceType": "Practitioner", "id": "c1"}]
    assert out["code"] == {
        "coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "referral"}]
    }
    assert out["authoredOn"] == shift_date("2024-03-10T09:00:00+07:00", days)
    assert out["extension"] == [{"url": "u2", "valueBoolean": True}]
    assert (
        out["meta"]["profile"] == ["http://p"] and "tag" not in out["meta"] and "versionId" not in out["meta"]
    )
    for gone in ("text", "identifier", "requisition", "note", "patientInstruction"):
        assert gone not in out
    text = str(out)
    for secret in (
        "Somchai",
        "Anan",
        "REF-1",
        "REQ-9",
        "1234",
        "sr1",
        "o1",
        "mother",
        "yellow",
        "free text",
        "Maidenname",
        "Sukhumvit",
        "Khlong",
        "0899999999",
    ):
        assert secret not in text, secret


def test_patient_keeps_only_the_allowed_elements() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "active": True,
        "gender": "male",
        "birthDate": "2020-06-15",
        "_birthDate": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "2020-06-15T08:10:00+07:00",
                }
            ]
        },
        "name": [{"family": "Jaidee"}],
        "telecom": [{"system": "phone", "value": "0812345678"}],
        "multipleBirthInteger": 2,
        "photo": [{"data": "AAAA"}],
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-nationality",
                "extension": [{"url": "code", "valueCodeableConcept": {"text": "Myanmar"}}],
            }
        ],
        "address": [
            {
                "line": ["12 Soi 3"],
                "postalCode": "10520",
                "extension": [
                    {
                        "url": "https://termtem.org/fhir/StructureDefinition/th-dopa-address-code",
                        "extension": [
                            {"url": "province", "valueCoding": {"system": "s", "code": "10"}},
                            {"url": "district", "valueCoding": {"system": "s", "code": "1011"}},
                            {"url": "subdistrict", "valueCoding": {"system": "s", "code": "101101"}},
                        ],
                    }
                ],
            }
        ],
    }
    deid = _deid()
    out = deid.resource(patient, "p1")
    assert set(out) == {"resourceType", "id", "meta", "active", "gender", "birthDate", "address"}
    assert out["birthDate"] == shift_date("2020-06-15", Pseudonymiser(KEY).offset_days("p1"))[:7]
    codes = [p["valueCoding"]["code"] for p in out["address"][0]["extension"][0]["extension"]]
    assert codes == ["10", "1011"]
    coarse = deid.resource(patient, "p1", level=3)
    assert coarse["birthDate"] == out["birthDate"][:4] and coarse["gender"] == "unknown"
    assert [p["url"] for p in coarse["address"][0]["extension"][0]["extension"]] == ["province"]


def test_pseudonyms_depend_on_the_project_key() -> None:
    a, b = Pseudonymiser(b"a" * 32), Pseudonymiser(b"b" * 32)
    assert a.child("p1") == Pseudonymiser(b"a" * 32).child("p1") != b.child("p1")
    assert len(a.child("p1")) == 32 and a.child("p1") != a.child("p2")


def test_child_of_uses_the_usual_link_fields() -> None:
    assert child_of({"resourceType": "Patient", "id": "x"}) == "x"
    assert child_of({"resourceType": "Immunization", "patient": {"reference": "Patient/y/_history/2"}}) == "y"
    assert child_of({"resourceType": "Task", "for": {"reference": "http://h/fhir/Patient/z"}}) == "z"
    assert child_of({"resourceType": "Observation", "subject": {"reference": "Group/g"}}) is None


def test_k_anonymity_generalises_then_suppresses() -> None:
    children = [(f"a{n}", ("2020-01", "female", "1011", "10")) for n in range(5)]  # a full cell
    children += [(f"b{n}", (f"2020-0{n + 2}", "male", "1011", "10")) for n in range(5)]  # year cell
    children += [(f"c{n}", (f"2019-0{n + 1}", "female", f"10{n + 12}", "10")) for n in range(5)]  # province
    children += [
        (f"d{n}", (f"2018-0{n + 1}", ("male", "female")[n % 2], f"10{n + 20}", "10")) for n in range(5)
    ]
    children += [("lonely", ("2010-01", "male", "1050", "10"))]
    levels = kanon.generalise(children, 5)
    assert {levels[f"a{n}"] for n in range(5)} == {0}
    assert {levels[f"b{n}"] for n in range(5)} == {1}
    assert {levels[f"c{n}"] for n in range(5)} == {2}
    assert {levels[f"d{n}"] for n in range(5)} == {3}
    assert levels["lonely"] == SUPPRESSED


def test_the_common_shapes_decided_inline_follow_the_same_rules() -> None:
    """CodeableConcepts, Codings and plain References take short paths in the walk: the rules hold there
    too (a citizen id as a code goes, a date as a code moves, an Identifier shape inside a concept goes,
    a reference that cannot be pseudonymised goes)."""
    deid = _deid()
    days = Pseudonymiser(KEY).offset_days("p1")
    first12 = "110370000001"
    cid = first12 + str((11 - sum(int(first12[i]) * (13 - i) for i in range(12)) % 11) % 10)
    resource = {
        "resourceType": "Observation",
        "id": "o1",
        "category": [{"coding": [{"system": "s", "code": cid}], "text": "Somchai"}],
        "code": {"coding": [{"system": "s", "code": "2024-03-10"}], "text": "Anan"},
        "valueCodeableConcept": {"coding": [{"system": "s", "value": "HN-1"}]},
        "performer": [{"reference": "Practitioner/pr1"}, {"reference": "urn:uuid:1"}],
        "subject": {"reference": "urn:uuid:2"},
    }
    out = deid.resource(resource, "p1")
    assert out["category"] == [{"coding": [{"system": "s"}]}]
    assert out["code"] == {"coding": [{"system": "s", "code": shift_date("2024-03-10", days)}]}
    assert "valueCodeableConcept" not in out and "subject" not in out
    assert out["performer"] == [
        {"reference": f"Practitioner/{Pseudonymiser(KEY).reference('Practitioner', 'pr1')}"}
    ]
    assert "Somchai" not in str(out) and "Anan" not in str(out) and cid not in str(out)
