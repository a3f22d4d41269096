"""Structural R4 validation: expressions of typical errors, and HL7's own R4 examples passing."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_server.validation.structural import is_known_resource_type, validate_structure

_EXAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz"

# Conformance resources are not "examples of data"; bundles made only of them are skipped too (they are
# large and exercise the same models as the definitions shipped in fhir_server/definitions).
_DEFINITION_TYPES = frozenset(
    {
        "StructureDefinition", "CodeSystem", "ValueSet", "ConceptMap", "SearchParameter",
        "OperationDefinition", "CapabilityStatement", "CompartmentDefinition", "ImplementationGuide",
        "NamingSystem", "StructureMap", "GraphDefinition", "MessageDefinition", "TerminologyCapabilities",
    }
)  # fmt: skip

# HL7 R4 examples that are genuinely invalid R4: file -> regex every reported expression must match.
_INVALID_EXAMPLES: dict[str, str] = {
    # Nested items lack Questionnaire.item.linkId (min 1 in R4).
    "Questionnaire-qs1.json": r"Questionnaire\.item\[0\](\.item\[\d+\])+\.linkId",
}

_PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": "https://terms.sil-th.org/id/th-cid", "value": "1234567890121"}],
    "name": [{"family": "Sukjai", "given": ["Somchai", "Dee"]}],
    "gender": "male",
    "birthDate": "2019-05-01",
    "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "approx"}]},
    "extension": [{"url": "http://example.org/y", "valueString": "a", "_valueString": {"id": "z"}}],
}


def _expressions(issues: list[dict[str, Any]]) -> set[str]:
    return {e for issue in issues for e in issue.get("expression", [])}


def test_valid_patient_passes() -> None:
    assert validate_structure(_PATIENT) == []


def test_wrong_birthdate_type_and_format() -> None:
    issues = validate_structure({**_PATIENT, "birthDate": 2019})
    assert _expressions(issues) == {"Patient.birthDate"}
    issues = validate_structure({**_PATIENT, "birthDate": "2019-13-01"})
    assert _expressions(issues) == {"Patient.birthDate"}


def test_lax_json_types_rejected() -> None:
    issues = validate_structure({**_PATIENT, "active": "yes", "multipleBirthInteger": "2"})
    assert {(i["code"], i["expression"][0]) for i in issues} == {
        ("value", "Patient.active"),
        ("value", "Patient.multipleBirthInteger"),
    }


def test_array_cardinality() -> None:
    issues = validate_structure({**_PATIENT, "gender": ["male"], "name": {"family": "x"}})
    assert _expressions(issues) == {"Patient.gender", "Patient.name"}


def test_nested_list_index_in_expression() -> None:
    issues = validate_structure({**_PATIENT, "name": [{"given": ["Somchai", 7]}]})
    assert _expressions(issues) == {"Patient.name[0].given[1]"}


def test_unknown_element() -> None:
    issues = validate_structure({**_PATIENT, "favouriteColour": "blue"})
    assert [(i["code"], i["expression"]) for i in issues] == [("structure", ["Patient.favouriteColour"])]


def test_missing_required_elements_all_reported() -> None:
    issues = validate_structure({"resourceType": "Observation"})
    assert {(i["code"], i["expression"][0]) for i in issues} == {
        ("required", "Observation.status"),
        ("required", "Observation.code"),
    }


def test_missing_required_nested_in_backbone_and_contained() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "component": [{"valueString": "x"}],
        "contained": [{"resourceType": "Observation", "code": {"text": "x"}}],
    }
    assert _expressions(validate_structure(obs)) == {
        "Observation.component[0].code",
        "Observation.contained[0].status",
    }


def test_choice_with_two_values() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueString": "a",
           "valueBoolean": True}  # fmt: skip
    issues = validate_structure(obs)
    assert [(i["code"], i["expression"]) for i in issues] == [("structure", ["Observation"])]


def test_unknown_resource_type() -> None:
    assert not is_known_resource_type("Foo")
    assert is_known_resource_type("SubstanceSpecification")
    assert validate_structure({"resourceType": "Foo"})[0]["code"] == "invalid"
    assert validate_structure([1])[0]["code"] == "structure"


def test_r4_only_resource_checked_against_r4_snapshot() -> None:
    good = {"resourceType": "MedicinalProductIndication", "subject": [{"reference": "MedicinalProduct/x"}]}
    assert validate_structure(good) == []
    bad = {**good, "subject": {"reference": "MedicinalProduct/x"}, "bogus": 1}
    assert _expressions(validate_structure(bad)) == {"MedicinalProductIndication.subject",
                                                     "MedicinalProductIndication.bogus"}  # fmt: skip


def test_r4b_only_element_rejected() -> None:
    plan = {"resourceType": "PlanDefinition", "status": "draft", "subjectCanonical": "http://x"}
    assert _expressions(validate_structure(plan)) == {"PlanDefinition.subjectCanonical"}


def _examples() -> list[tuple[str, dict[str, Any]]]:
    out = []
    with tarfile.open(_EXAMPLES, "r:gz") as tar:
        for member in tar:
            if not member.name.endswith(".json") or member.name.endswith("package.json"):
                continue
            resource = orjson.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
            rtype = resource.get("resourceType")
            if rtype in _DEFINITION_TYPES:
                continue
            entries = resource.get("entry", []) if rtype == "Bundle" else []
            if entries and all(
                e.get("resource", {}).get("resourceType") in _DEFINITION_TYPES for e in entries
            ):
                continue
            out.append((member.name.removeprefix("package/"), resource))
    return out


def test_hl7_r4_examples_are_valid() -> None:
    examples = _examples()
    assert len(examples) > 650
    failures = {}
    for name, resource in examples:
        found = _expressions(validate_structure(resource))
        expected = _INVALID_EXAMPLES.get(name)
        if (expected is None and found) or (
            expected and not (found and all(re.fullmatch(expected, e) for e in found))
        ):
            failures[name] = sorted(found)[:5]
    assert failures == {}


@pytest.mark.parametrize("name", sorted(_INVALID_EXAMPLES))
def test_known_invalid_examples_exist(name: str) -> None:
    assert name in dict(_examples())
