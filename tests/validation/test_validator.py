"""Base R4 rules of the validator, each with an invalid resource and the exact issue expected."""

from __future__ import annotations

from fhir_server.validation import invariants
from fhir_server.validation.validator import has_errors, validate


def errs(resource: dict) -> list[tuple[str, tuple[str, ...]]]:
    return [(i["code"], tuple(i["expression"])) for i in validate(resource) if i["severity"] == "error"]


def test_unknown_element():
    assert errs({"resourceType": "Patient", "colour": "blue"}) == [("structure", ("Patient.colour",))]


def test_unknown_resource_type():
    assert errs({"resourceType": "Patientx"})[0][0] == "invalid"


def test_missing_required_element():
    assert errs({"resourceType": "Observation", "status": "final"}) == [("required", ("Observation.code",))]


def test_array_shape():
    assert errs({"resourceType": "Patient", "name": {"family": "x"}}) == [("structure", ("Patient.name",))]
    assert errs({"resourceType": "Patient", "gender": ["male"]}) == [("structure", ("Patient.gender",))]


def test_primitive_regex_and_json_type():
    assert errs({"resourceType": "Patient", "birthDate": "2020-13-01"}) == [("value", ("Patient.birthDate",))]
    assert errs({"resourceType": "Patient", "active": "yes"}) == [("value", ("Patient.active",))]
    assert errs({"resourceType": "Patient", "multipleBirthInteger": -1.5}) == [
        ("value", ("Patient.multipleBirthInteger",))
    ]


def test_choice_types():
    base = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    assert errs({**base, "valueAddress": {"city": "x"}}) == [("structure", ("Observation.valueAddress",))]
    assert ("structure", ("Observation.value[x]",)) in errs(
        {**base, "valueString": "a", "valueBoolean": True}
    )


def test_required_binding_error():
    assert errs({"resourceType": "Patient", "gender": "boy"}) == [("code-invalid", ("Patient.gender",))]


def test_invariant_in_fhirpath():
    bad = {"resourceType": "Patient", "contact": [{"gender": "male"}]}
    found = validate(bad)
    assert next(i for i in found if "pat-1" in i["diagnostics"])["expression"] == ["Patient.contact[0]"]


def test_ele1_empty_element():
    assert errs({"resourceType": "Patient", "maritalStatus": {}}) == [
        ("invariant", ("Patient.maritalStatus",))
    ]


def test_ext1_value_and_extensions():
    ext = {"url": "http://example.org/x", "valueString": "a", "extension": [{"url": "y", "valueString": "b"}]}
    assert ("invariant", ("Patient.extension[0]",)) in errs({"resourceType": "Patient", "extension": [ext]})


def test_core_extension_wrong_value_type():
    ext = {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueString": "10:00"}
    bad = {"resourceType": "Patient", "birthDate": "2020-01-01", "_birthDate": {"extension": [ext]}}
    assert ("structure", ("Patient.birthDate.extension[0].valueString",)) in errs(bad)


def test_reference_target_type():
    bad = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Practitioner/1"},
    }
    assert errs(bad) == [("structure", ("Observation.subject.reference",))]


def test_contained_resources_are_validated_and_must_be_referenced():
    bad = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "contained": [{"resourceType": "Patient", "id": "p", "gender": "boy"}],
    }
    found = errs(bad)
    assert ("code-invalid", ("Observation.contained[0].gender",)) in found
    assert ("invariant", ("Observation.contained[0]",)) in found  # dom-3: not referenced


def test_bundle_entries_are_validated_and_urn_references_resolved():
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:9d1c7a40-6c7e-4c4f-9f0e-2b3a4c5d6e71",
                "resource": {"resourceType": "Patient", "gender": "boy"},
            },
            {
                "fullUrl": "urn:uuid:9d1c7a40-6c7e-4c4f-9f0e-2b3a4c5d6e72",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "performer": [{"reference": "urn:uuid:9d1c7a40-6c7e-4c4f-9f0e-2b3a4c5d6e71"}],
                    "subject": {"reference": "urn:uuid:9d1c7a40-6c7e-4c4f-9f0e-2b3a4c5d6e72"},
                },
            },
        ],
    }
    found = errs(bundle)
    assert ("code-invalid", ("Bundle.entry[0].resource.gender",)) in found
    assert ("structure", ("Bundle.entry[1].resource.subject.reference",)) in found  # an Observation
    assert len(found) == 2


def test_skipped_invariants_are_documented():
    assert set(invariants.SKIPPED) == {"que-7"}
    assert {"txt-1", "txt-2"} <= invariants.NATIVE  # narrative.check
    assert all(len(reason) > 20 for reason in invariants.SKIPPED.values())


def test_valid_resource_has_no_errors():
    ok = {"resourceType": "Patient", "gender": "female", "birthDate": "2020-01-01", "name": [{"family": "x"}]}
    assert not has_errors(validate(ok))


def test_contained_resources_reference_each_other_through_the_container():
    claim_like = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "contained": [
            {"resourceType": "Patient", "id": "p"},
            {
                "resourceType": "Group",
                "id": "g",
                "type": "person",
                "actual": True,
                "member": [{"entity": {"reference": "#p"}}],
            },
        ],
        "subject": {"reference": "#g"},
    }
    assert errs(claim_like) == []
    claim_like["contained"][1]["member"][0]["entity"]["reference"] = "#nobody"
    assert errs(claim_like) == [
        ("invariant", ("Observation.contained[0]",)),  # dom-3: Patient p is no longer referenced
        ("structure", ("Observation.contained[1].member[0].entity.reference",)),
    ]


def test_synthea_bundle_has_no_errors():
    import json
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata" / "synthea" / "R4"
    bundle = json.loads(sorted(folder.glob("*.json"))[0].read_text())
    assert not has_errors(validate(bundle))


def test_unknown_code_in_our_code_system_is_an_error():
    from fhir_server import canonical

    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": canonical.code_system(canonical.CS_DSPM_DOMAIN), "code": "ZZ"}]},
    }
    assert errs(obs) == [("code-invalid", ("Observation.code.coding[0].code",))]


def test_unknown_code_in_an_hl7_code_system_is_an_error():
    """R4: a code is defined by its system; one the (complete) system lacks is an error, as the HL7
    validator reports it, even where the binding is only extensible."""
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "interpretation": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "HIGHER",
                    }
                ]
            }
        ],
    }
    assert ("code-invalid", ("Observation.interpretation[0].coding[0].code",)) in errs(obs)
    obs["interpretation"][0]["coding"][0]["code"] = "H"
    assert errs(obs) == []
