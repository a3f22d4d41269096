"""Slicing: each discriminator kind and the open/closed/openAtEnd/ordered rules, on small test profiles."""

from __future__ import annotations

from typing import Any

from fhir_server import canonical
from fhir_server.validation.model import register
from fhir_server.validation.snapshot import generate_snapshot
from fhir_server.validation.validator import validate

_CORE = "http://hl7.org/fhir/StructureDefinition/"


def _profile(id_: str, type_: str, elements: list[dict[str, Any]]) -> str:
    url = f"https://example.org/test/StructureDefinition/{id_}"
    sd = {
        "resourceType": "StructureDefinition",
        "id": id_,
        "url": url,
        "name": id_,
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": type_,
        "baseDefinition": _CORE + type_,
        "derivation": "constraint",
        "differential": {"element": elements},
    }
    register(generate_snapshot(sd))
    return url


def _errors(resource: dict[str, Any], url: str) -> list[str]:
    return [i["diagnostics"] for i in validate(resource, [url]) if i["severity"] == "error"]


def _ident_profile(id_: str, rules: str, ordered: bool) -> str:
    return _profile(
        id_,
        "Patient",
        [
            {
                "id": "Patient.identifier",
                "path": "Patient.identifier",
                "slicing": {
                    "discriminator": [{"type": "value", "path": "system"}],
                    "rules": rules,
                    "ordered": ordered,
                },
            },
            {"id": "Patient.identifier:a", "path": "Patient.identifier", "sliceName": "a", "max": "1"},
            {"id": "Patient.identifier:a.system", "path": "Patient.identifier.system", "fixedUri": "urn:a"},
            {"id": "Patient.identifier:b", "path": "Patient.identifier", "sliceName": "b", "max": "1"},
            {"id": "Patient.identifier:b.system", "path": "Patient.identifier.system", "fixedUri": "urn:b"},
        ],
    )


def _patient(*systems: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": s, "value": "1"} for s in systems]}


def test_value_discriminator_closed():
    url = _ident_profile("closed-ids", "closed", False)
    assert _errors(_patient("urn:a", "urn:b"), url) == []
    assert _errors(_patient("urn:a", "urn:c"), url) == [
        f"Patient.identifier[1]: This element does not match any known slice defined in {url} "
        "and slicing is CLOSED"
    ]


def test_open_slicing_allows_other_items():
    url = _ident_profile("open-ids", "open", False)
    assert _errors(_patient("urn:c", "urn:a"), url) == []


def test_ordered_slicing():
    url = _ident_profile("ordered-ids", "open", True)
    assert _errors(_patient("urn:a", "urn:b"), url) == []
    assert _errors(_patient("urn:b", "urn:a"), url) == [
        "Patient.identifier[1]: Slice 'a' is out of order (slicing is ordered)"
    ]


def test_open_at_end():
    url = _ident_profile("openatend-ids", "openAtEnd", False)
    assert _errors(_patient("urn:a", "urn:c"), url) == []
    assert _errors(_patient("urn:c", "urn:a"), url) == [
        "Patient.identifier[1]: Slice 'a' follows unsliced content (slicing is openAtEnd)"
    ]


def test_slice_cardinality():
    url = _ident_profile("card-ids", "open", False)
    assert _errors(_patient("urn:a", "urn:a"), url) == [
        f"Patient.identifier: Slice 'a': maximum allowed = 1, but found 2 (from {url})"
    ]


def test_type_discriminator():
    url = _profile(
        "typed-bundle",
        "Bundle",
        [
            {
                "id": "Bundle.entry",
                "path": "Bundle.entry",
                "slicing": {"discriminator": [{"type": "type", "path": "resource"}], "rules": "closed"},
            },
            {
                "id": "Bundle.entry:patient",
                "path": "Bundle.entry",
                "sliceName": "patient",
                "min": 1,
                "max": "1",
            },
            {
                "id": "Bundle.entry:patient.resource",
                "path": "Bundle.entry.resource",
                "type": [{"code": "Patient"}],
            },
        ],
    )
    patient = {"resource": {"resourceType": "Patient"}}
    other = {"resource": {"resourceType": "Organization", "name": "x"}}
    assert _errors({"resourceType": "Bundle", "type": "collection", "entry": [patient]}, url) == []
    assert _errors({"resourceType": "Bundle", "type": "collection", "entry": [patient, other]}, url) == [
        f"Bundle.entry[1]: This element does not match any known slice defined in {url} and slicing is CLOSED"
    ]
    assert _errors({"resourceType": "Bundle", "type": "collection", "entry": [other]}, url)[-1] == (
        f"Bundle.entry: Slice 'patient': minimum required = 1, but only found 0 (from {url})"
    )


def test_profile_discriminator():
    child = canonical.structure_definition(canonical.PROFILE_CHILD_PATIENT)
    url = _profile(
        "profiled-bundle",
        "Bundle",
        [
            {
                "id": "Bundle.entry",
                "path": "Bundle.entry",
                "slicing": {"discriminator": [{"type": "profile", "path": "resource"}], "rules": "closed"},
            },
            {"id": "Bundle.entry:child", "path": "Bundle.entry", "sliceName": "child", "min": 0, "max": "*"},
            {
                "id": "Bundle.entry:child.resource",
                "path": "Bundle.entry.resource",
                "type": [{"code": "Patient", "profile": [child]}],
            },
        ],
    )
    good = {
        "resourceType": "Patient",
        "identifier": [{"system": canonical.CID_SYSTEM, "value": "1103702488992"}],
        "name": [{"family": "ใจดี", "given": ["มะลิ"]}],
        "gender": "female",
        "birthDate": "2021-03-14",
    }
    bad = {"resourceType": "Patient", "gender": "female"}
    assert _errors({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": good}]}, url) == []
    found = _errors({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": bad}]}, url)
    assert (
        f"Bundle.entry[0]: This element does not match any known slice defined in {url} and slicing is CLOSED"
        in found
    )


def test_exists_discriminator():
    url = _profile(
        "exists-ids",
        "Patient",
        [
            {
                "id": "Patient.identifier",
                "path": "Patient.identifier",
                "slicing": {"discriminator": [{"type": "exists", "path": "period"}], "rules": "open"},
            },
            {
                "id": "Patient.identifier:dated",
                "path": "Patient.identifier",
                "sliceName": "dated",
                "max": "1",
            },
            {"id": "Patient.identifier:dated.period", "path": "Patient.identifier.period", "min": 1},
        ],
    )
    dated = {"value": "1", "period": {"start": "2020-01-01"}}
    assert _errors({"resourceType": "Patient", "identifier": [dated, {"value": "2"}]}, url) == []
    assert _errors({"resourceType": "Patient", "identifier": [dated, dated]}, url) == [
        f"Patient.identifier: Slice 'dated': maximum allowed = 1, but found 2 (from {url})"
    ]
