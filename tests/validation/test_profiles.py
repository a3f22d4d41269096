"""Thai profiles: every example is valid, and each rule rejects the invalid variant with the exact issue."""

from __future__ import annotations

import pytest

from fhir_server import canonical
from fhir_server.validation import profiles
from fhir_server.validation.validator import validate
from tests.validation.conftest import EXAMPLES, load_example


def errors(resource: dict) -> list[dict]:
    return [i for i in validate(resource) if i["severity"] == "error"]


def only_error(resource: dict) -> dict:
    found = errors(resource)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_examples_are_valid(path):
    issues = validate(load_example(path.stem))
    assert [
        i for i in issues if i["severity"] in ("error", "warning") and "dom-6" not in i["diagnostics"]
    ] == []


def test_every_profile_has_an_example():
    covered = {load_example(p.stem)["meta"]["profile"][0] for p in EXAMPLES.glob("*.json")}
    ours = {sd["url"] for sd in profiles.structure_definitions() if sd["type"] != "Extension"}
    assert ours == covered


def test_cid_wrong_check_digit():
    p = load_example("Patient-th-child-example")
    p["identifier"][0]["value"] = "1103702488991"
    issue = only_error(p)
    assert issue["expression"] == ["Patient.identifier[0]"]
    assert "th-cid-1" in issue["diagnostics"] and issue["code"] == "invariant"


def test_missing_gender_on_child_patient():
    p = load_example("Patient-th-child-example")
    del p["gender"]
    issue = only_error(p)
    assert issue["expression"] == ["Patient.gender"] and issue["code"] == "required"
    # the base R4 Patient does not require it
    del p["meta"]
    assert errors(p) == []


def test_unknown_province_code():
    p = load_example("Patient-th-child-example")
    dopa = p["address"][0]["extension"][0]["extension"]
    dopa[0]["valueCoding"]["code"] = "99"
    found = errors(p)
    assert any(
        i["code"] == "code-invalid"
        and i["expression"] == ["Patient.address[0].extension[0].extension[0].valueCoding"]
        for i in found
    ), found


def test_district_outside_province():
    p = load_example("Patient-th-child-example")
    p["address"][0]["extension"][0]["extension"][1]["valueCoding"]["code"] = "1101"
    p["address"][0]["extension"][0]["extension"][2]["valueCoding"]["code"] = "110101"
    found = errors(p)
    assert any("th-addr-1" in i["diagnostics"] for i in found), found


def test_name_prefix_extension_wrong_value_type():
    p = load_example("Patient-th-child-example")
    p["name"][0]["extension"][0] = {
        "url": canonical.structure_definition(canonical.EXT_NAME_PREFIX),
        "valueString": "ด.ญ.",
    }
    found = errors(p)
    assert any(
        i["expression"] == ["Patient.name[0].extension[0].valueString"] and i["code"] == "structure"
        for i in found
    ), found


def test_extension_in_wrong_context():
    p = load_example("Patient-th-child-example")
    p["extension"] = [
        {
            "url": canonical.structure_definition(canonical.EXT_NAME_PREFIX),
            "valueCoding": {"system": canonical.code_system(canonical.CS_DOPA_NAME_PREFIX), "code": "001"},
        }
    ]
    issue = only_error(p)
    assert issue["code"] == "extension" and issue["expression"] == ["Patient.extension[0]"]
    assert "not allowed on Patient" in issue["diagnostics"]


def test_unknown_extension_of_ours_is_an_error():
    p = load_example("Patient-th-child-example")
    p["extension"] = [{"url": canonical.structure_definition("no-such-extension"), "valueString": "x"}]
    issue = only_error(p)
    assert issue["code"] == "extension" and "Unknown extension" in issue["diagnostics"]


def test_dspm_sixth_domain():
    o = load_example("Observation-th-dspm-example")
    o["component"].append(
        {
            "code": {"coding": [{"system": canonical.code_system(canonical.CS_DSPM_DOMAIN), "code": "XX"}]},
            "valueCodeableConcept": o["component"][0]["valueCodeableConcept"],
        }
    )
    found = errors(o)
    messages = {(tuple(i["expression"]), i["diagnostics"].split(": ", 1)[1].split(" (")[0]) for i in found}
    assert (("Observation.component",), "Maximum allowed = 5, but found 6") in messages
    assert any(e == ("Observation.component[5]",) and "slicing is CLOSED" in m for e, m in messages)


def test_dspm_duplicate_domain_breaks_slice_cardinality():
    o = load_example("Observation-th-dspm-example")
    o["component"][4] = o["component"][0]
    found = errors(o)
    assert any("Slice 'GM': maximum allowed = 1, but found 2" in i["diagnostics"] for i in found)
    assert any("Slice 'PS': minimum required = 1, but only found 0" in i["diagnostics"] for i in found)


def test_dspm_result_required_binding():
    o = load_example("Observation-th-dspm-example")
    # a real code, but from the domain code system: only the binding is broken
    o["valueCodeableConcept"]["coding"] = [
        {"system": canonical.code_system(canonical.CS_DSPM_DOMAIN), "code": "GM"}
    ]
    issue = only_error(o)
    assert issue["code"] == "code-invalid" and issue["expression"] == ["Observation.valueCodeableConcept"]


def test_unknown_code_in_our_code_system():
    s = load_example("ServiceRequest-th-referral-example")
    s["reasonCode"][0]["coding"][0]["code"] = "not-a-reason"
    issue = only_error(s)
    assert issue["expression"] == ["ServiceRequest.reasonCode[0].coding[0].code"]


def test_referral_reason_extensible_binding_is_a_warning():
    s = load_example("ServiceRequest-th-referral-example")
    s["reasonCode"][0]["coding"] = [{"system": "http://snomed.info/sct", "code": "386053000"}]
    issues = validate(s)
    assert errors(s) == []
    assert any(
        i["severity"] == "warning"
        and i["code"] == "code-invalid"
        and i["expression"] == ["ServiceRequest.reasonCode[0]"]
        for i in issues
    )


def test_consent_for_six_year_old_granted_by_the_child_alone():
    c = load_example("Consent-th-consent-example")
    c["contained"][0]["birthDate"] = "2018-01-01"  # six at the consent date 2024-03-20
    c["performer"] = [{"reference": "#child"}]
    issue = only_error(c)
    assert "th-consent-1" in issue["diagnostics"] and issue["expression"] == ["Consent"]


def test_consent_for_sixteen_year_old_may_be_granted_by_the_child():
    c = load_example("Consent-th-consent-example")
    c["contained"][0]["birthDate"] = "2008-01-01"
    c["performer"] = [{"reference": "#child"}]
    assert errors(c) == []


def test_consent_age_rule_uses_the_resolver_for_stored_patients():
    c = load_example("Consent-th-consent-example")
    del c["contained"]
    c["patient"] = {"reference": "Patient/p1"}
    c["performer"] = [{"reference": "Patient/p1"}]
    stored = {"resourceType": "Patient", "id": "p1", "birthDate": "2019-05-05"}
    found = [
        i
        for i in validate(c, resolver=lambda ref: stored if ref == "Patient/p1" else None)
        if i["severity"] == "error"
    ]
    assert [("th-consent-1" in i["diagnostics"]) for i in found] == [True]


def test_wrong_reference_target():
    t = load_example("Task-th-referral-task-example")
    t["owner"] = {"reference": "Patient/th-child-example"}
    issue = only_error(t)
    assert issue["expression"] == ["Task.owner.reference"]
    assert "points to a Patient" in issue["diagnostics"]


def test_task_rejected_needs_reason():
    t = load_example("Task-th-referral-task-example")
    del t["statusReason"]
    assert "th-task-1" in only_error(t)["diagnostics"]


def test_fixed_value_violation():
    s = load_example("ServiceRequest-th-referral-example")
    s["intent"] = "plan"
    issue = only_error(s)
    assert issue["expression"] == ["ServiceRequest.intent"] and issue["code"] == "value"


def test_pattern_violation():
    c = load_example("Consent-th-consent-example")
    c["scope"]["coding"][0]["code"] = "research"
    issue = only_error(c)
    assert issue["expression"] == ["Consent.scope"] and "pattern" in issue["diagnostics"]


def test_growth_wrong_unit():
    o = load_example("Observation-th-growth-example")
    o["valueQuantity"]["code"] = "cm"
    found = errors(o)
    assert any("th-growth-2" in i["diagnostics"] for i in found), found
    # a weight is also an R4 vital sign: the bodyweight profile binds its unit (kg, g, [lb_av])
    assert any("ucum-bodyweight" in i["diagnostics"] for i in found), found
    assert len(found) == 2


def test_closed_slicing_in_dopa_extension():
    p = load_example("Patient-th-child-example")
    p["address"][0]["extension"][0]["extension"].append({"url": "village", "valueString": "3"})
    found = errors(p)
    assert any(
        "slicing is CLOSED" in i["diagnostics"]
        and i["expression"] == ["Patient.address[0].extension[0].extension[3]"]
        for i in found
    ), found


def test_agency_type_required_binding_and_hcode_format():
    o = load_example("Organization-th-agency-example")
    o["identifier"][0]["value"] = "123"
    assert "th-hcode-1" in only_error(o)["diagnostics"]


def test_guardian_relationship_required():
    r = load_example("RelatedPerson-th-guardian-example")
    r["relationship"][0]["coding"][0]["code"] = "NEIGHBOR"
    found = errors(r)
    # the required binding, and the code system itself, which has no such code
    assert {(i["code"], i["expression"][0]) for i in found} == {
        ("code-invalid", "RelatedPerson.relationship[0]"),
        ("code-invalid", "RelatedPerson.relationship[0].coding[0].code"),
    }


def test_unknown_profile_is_a_warning():
    p = load_example("Patient-th-child-example")
    issues = validate(p, ["https://example.org/StructureDefinition/nope"])
    assert any(i["severity"] == "warning" and i["code"] == "not-supported" for i in issues)


def test_profile_for_other_type_is_an_error():
    p = load_example("Patient-th-child-example")
    found = [
        i
        for i in validate(p, [canonical.structure_definition(canonical.PROFILE_AGENCY)])
        if i["severity"] == "error"
    ]
    assert any("is for Organization, not Patient" in i["diagnostics"] for i in found)


def test_shipped_profiles_have_snapshots_and_search_parameters():
    shipped = profiles.shipped_profiles()
    sds = [r for r in shipped if r["resourceType"] == "StructureDefinition"]
    sps = [r for r in shipped if r["resourceType"] == "SearchParameter"]
    assert all(sd["snapshot"]["element"] and sd["differential"]["element"] for sd in sds)
    assert {sp["code"] for sp in sps} >= {"cid", "dspm-result", "performer-agency", "owner-agency"}
    assert profiles.profile(canonical.search_parameter(canonical.SP_PATIENT_CID))["base"] == ["Patient"]
    assert (
        canonical.structure_definition(canonical.PROFILE_CHILD_PATIENT)
        in profiles.supported_profiles()["Patient"]
    )


def test_english_name_has_no_dopa_prefix():
    p = load_example("Patient-th-child-example")
    p["name"][1]["extension"].append(p["name"][0]["extension"][0])
    issue = only_error(p)
    assert issue["expression"] == ["Patient.name[1].extension"]
    assert "Slice 'prefix': maximum allowed = 0, but found 1" in issue["diagnostics"]


def test_only_one_thai_name():
    p = load_example("Patient-th-child-example")
    p["name"][1]["extension"] = [
        {"url": "http://hl7.org/fhir/StructureDefinition/language", "valueCode": "th"}
    ]
    assert "Slice 'thai': maximum allowed = 1, but found 2" in only_error(p)["diagnostics"]


@pytest.mark.parametrize("resource", profiles.shipped_profiles(), ids=lambda r: r["id"])
def test_shipped_conformance_resources_are_valid(resource):
    assert errors(resource) == []
