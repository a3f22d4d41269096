"""The terminology service functions, in Thai and English, on our code systems and on FHIR core ones."""

from __future__ import annotations

import pytest

from fhir_server import canonical
from fhir_server.interactions.errors import FhirError
from fhir_server.terminology import (
    MAX_EXPANSION,
    expand,
    expand_codes,
    lookup,
    subsumes,
    translate,
    validate_code,
)

DSPM_RESULT = canonical.code_system(canonical.CS_DSPM_RESULT)
SPECIALPP = canonical.code_system(canonical.CS_MOPH_SPECIALPP)
CHILDDEVELOP = canonical.code_system(canonical.CS_MOPH_CHILDDEVELOP)
ADMIN = canonical.code_system(canonical.CS_ADMIN_AREA)
GENDER = "http://hl7.org/fhir/administrative-gender"
OBS_STATUS = "http://hl7.org/fhir/observation-status"
ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"


def params(resource: dict) -> dict:
    """Parameters as name -> first value (parts kept as the parameter dict)."""
    out: dict = {}
    for p in resource["parameter"]:
        value = next((v for k, v in p.items() if k.startswith("value")), p)
        out.setdefault(p["name"], value)
    return out


def all_params(resource: dict, name: str) -> list[dict]:
    return [p for p in resource["parameter"] if p["name"] == name]


def part(p: dict, name: str):
    return next(v for x in p["part"] if x["name"] == name for k, v in x.items() if k.startswith("value"))


# -- $lookup ------------------------------------------------------------------------------------------


def test_lookup_thai_by_default_and_english_on_request() -> None:
    th = params(lookup(DSPM_RESULT, "pass"))
    assert th["display"] == "สมวัย"
    assert th["name"] == "ThDspmResult"
    en = params(lookup(DSPM_RESULT, "pass", display_language="en"))
    assert en["display"].startswith("Pass")
    languages = {
        part(d, "language"): part(d, "value") for d in all_params(lookup(DSPM_RESULT, "pass"), "designation")
    }
    assert languages == {"th": "สมวัย", "en": en["display"]}


def test_lookup_base_code_system() -> None:
    out = params(lookup(GENDER, "female"))
    assert out["display"] == "Female"
    assert out["version"] == "4.0.1"


def test_lookup_reports_hierarchy_properties() -> None:
    out = lookup(ADMIN, "1001", display_language="en")
    assert params(out)["display"] == "Phra Nakhon"
    props = [(part(p, "code"), part(p, "value")) for p in all_params(out, "property")]
    assert ("parent", "10") in props
    assert ("child", "100101") in props
    assert ("level", "district") in props
    only = lookup(ADMIN, "1001", properties=["level"])
    assert [part(p, "code") for p in all_params(only, "property")] == ["level"]


def test_lookup_unknown_code_and_system_are_404() -> None:
    with pytest.raises(FhirError) as err:
        lookup(DSPM_RESULT, "nope")
    assert err.value.status == 404
    assert err.value.expression == ["Parameters.parameter.where(name = 'code')"]
    with pytest.raises(FhirError) as err:
        lookup("http://example.org/unknown", "x")
    assert err.value.status == 404
    with pytest.raises(FhirError) as err:
        lookup(DSPM_RESULT, None)
    assert err.value.status == 400


# -- $validate-code -----------------------------------------------------------------------------------


def test_validate_code_in_our_value_set_with_thai_and_english_display() -> None:
    vs = canonical.value_set(canonical.CS_DSPM_RESULT)
    ok = params(validate_code(vs, code="delay", system=DSPM_RESULT))
    assert ok["result"] is True and ok["display"] == "ล่าช้า (ช้ากว่าปกติ)"
    assert params(validate_code(vs, code="delay", system=DSPM_RESULT, display="Delayed development"))[
        "result"
    ]
    assert params(validate_code(vs, code="delay", system=DSPM_RESULT, display="ล่าช้า (ช้ากว่าปกติ)"))["result"]
    en = params(validate_code(vs, code="delay", system=DSPM_RESULT, display_language="en"))
    assert en["display"] == "Delayed development"
    bad = params(validate_code(vs, code="delay", system=DSPM_RESULT, display="Normal"))
    assert bad["result"] is False and "Display" in bad["message"]


def test_validate_code_unknown_code_and_system_answer_false() -> None:
    vs = canonical.value_set(canonical.CS_DSPM_RESULT)
    unknown_code = params(validate_code(vs, code="maybe", system=DSPM_RESULT))
    assert unknown_code["result"] is False and "Unknown code" in unknown_code["message"]
    unknown_system = params(validate_code(vs, code="pass", system="http://example.org/x"))
    assert unknown_system["result"] is False and "Unknown code system" in unknown_system["message"]
    cs_unknown = params(validate_code("http://example.org/x", code="pass", kind="CodeSystem"))
    assert cs_unknown["result"] is False


def test_validate_code_unknown_value_set_is_404() -> None:
    with pytest.raises(FhirError) as err:
        validate_code("http://example.org/ValueSet/none", code="x", system="http://example.org")
    assert err.value.status == 404


def test_validate_code_guardian_relationship_mixes_v3_and_ours() -> None:
    vs = canonical.value_set(canonical.VS_GUARDIAN_RELATIONSHIP)
    mother = params(validate_code(vs, coding={"system": ROLE, "code": "MTH"}))
    assert mother["result"] is True and mother["display"] == "มารดา"
    assert params(validate_code(vs, coding={"system": ROLE, "code": "MTH", "display": "mother"}))["result"]
    legal = canonical.code_system(canonical.CS_GUARDIAN_RELATIONSHIP)
    assert params(validate_code(vs, code="legal-guardian", system=legal))["result"] is True
    # a v3 role outside the subset
    assert params(validate_code(vs, code="NBOR", system=ROLE))["result"] is False


def test_validate_codeable_concept_any_coding_wins() -> None:
    vs = canonical.value_set(canonical.VS_CONSENT_PURPOSE)
    cc = {
        "coding": [
            {"system": "http://example.org", "code": "x"},
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "PUBHLTH"},
        ]
    }
    assert params(validate_code(vs, codeable_concept=cc))["result"] is True
    assert (
        params(validate_code(vs, code="HMARKT", system="http://terminology.hl7.org/CodeSystem/v3-ActReason"))[
            "result"
        ]
        is False
    )


def test_validate_code_against_code_system_and_base_value_set() -> None:
    assert params(validate_code(GENDER, code="other", kind="CodeSystem"))["result"] is True
    assert params(validate_code(GENDER, code="bogus", kind="CodeSystem"))["result"] is False
    vs = "http://hl7.org/fhir/ValueSet/observation-status"
    assert params(validate_code(vs, code="final", system=OBS_STATUS))["result"] is True
    assert params(validate_code(vs, code="finished", system=OBS_STATUS))["result"] is False
    assert params(validate_code(SPECIALPP, code="1B261", kind="CodeSystem", display_language="en"))[
        "display"
    ].startswith("DSPM overall result: suspected delay")


# -- $expand ------------------------------------------------------------------------------------------


def codes(expansion: dict) -> list[str]:
    return [c["code"] for c in expansion["expansion"]["contains"]]


def test_expand_filter_thai_and_english() -> None:
    vs = canonical.value_set(canonical.CS_DSPM_DOMAIN)
    assert codes(expand(vs, filter="ภาษา")) == ["RL", "EL"]
    assert codes(expand(vs, filter="LANGUAGE")) == ["RL", "EL"]
    assert codes(expand(vs, filter="expressive lang")) == ["EL"]
    assert expand(vs)["expansion"]["total"] == 5


def test_expand_filter_is_accent_insensitive() -> None:
    vs = canonical.value_set(canonical.CS_MOPH_RELIGION)
    assert codes(expand(vs, filter="bahai")) == ["09"]


def test_expand_display_language_and_designations() -> None:
    vs = canonical.value_set(canonical.CS_MOPH_SEX)
    th = expand(vs)["expansion"]["contains"]
    assert [c["display"] for c in th] == ["ชาย", "หญิง"]
    en = expand(vs, display_language="en", include_designations=True)["expansion"]["contains"]
    assert [c["display"] for c in en] == ["Male", "Female"]
    assert {d["language"] for d in en[0]["designation"]} == {"th", "en"}
    assert "designation" not in th[0]


def test_expand_paging() -> None:
    vs = canonical.value_set(canonical.VS_ADMIN_AREA_PROVINCE)
    first = expand(vs, count=10)
    assert first["expansion"]["total"] == 77 and len(codes(first)) == 10
    second = expand(vs, count=10, offset=10)
    assert second["expansion"]["offset"] == 10
    assert not set(codes(first)) & set(codes(second))
    assert codes(first)[0] == "10"  # Bangkok


def test_expand_base_value_set_and_v3_subset() -> None:
    assert codes(expand("http://hl7.org/fhir/ValueSet/administrative-gender")) == [
        "male",
        "female",
        "other",
        "unknown",
    ]
    purposes = expand(
        canonical.value_set(canonical.VS_CONSENT_PURPOSE), filter="ฉุกเฉิน", display_language="en"
    )
    assert [(c["code"], c["display"]) for c in purposes["expansion"]["contains"]] == [
        ("ETREAT", "emergency treatment")
    ]


def test_expand_inline_value_set_with_is_a_filter() -> None:
    bangkok = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {
            "include": [
                {
                    "system": ADMIN,
                    "filter": [
                        {"property": "concept", "op": "is-a", "value": "10"},
                        {"property": "level", "op": "=", "value": "district"},
                    ],
                }
            ]
        },
    }
    out = expand(value_set=bangkok, filter="บางรัก")
    assert codes(out) == ["1004"]
    assert expand(value_set=bangkok)["expansion"]["total"] == 50


def test_expand_refuses_unbounded() -> None:
    snomed = {
        "resourceType": "ValueSet",
        "url": "http://example.org/all-snomed",
        "status": "active",
        "compose": {"include": [{"system": "http://snomed.info/sct"}]},
    }
    with pytest.raises(FhirError) as err:
        expand(value_set=snomed)
    assert err.value.status == 422 and err.value.code == "too-costly"
    assert "unbounded" in err.value.diagnostics
    with pytest.raises(FhirError) as err:
        expand(canonical.value_set(canonical.VS_ADMIN_AREA_SUBDISTRICT))
    assert err.value.code == "too-costly" and str(MAX_EXPANSION) in err.value.diagnostics
    paged = expand(canonical.value_set(canonical.VS_ADMIN_AREA_SUBDISTRICT), count=5)
    assert paged["expansion"]["total"] == 7436


def test_expand_bad_input() -> None:
    with pytest.raises(FhirError) as err:
        expand("http://example.org/ValueSet/none")
    assert err.value.status == 404
    with pytest.raises(FhirError) as err:
        expand(canonical.value_set(canonical.CS_MOPH_SEX), count=-1)
    assert err.value.status == 400
    with pytest.raises(FhirError) as err:
        expand()
    assert err.value.status == 400


def test_expand_codes_for_in_searches() -> None:
    found = expand_codes(canonical.value_set(canonical.VS_ADMIN_AREA_DISTRICT))
    assert len(found) == 928
    assert (ADMIN, "1001") in found and (ADMIN, "10") not in found
    assert expand_codes("http://hl7.org/fhir/ValueSet/administrative-gender") == frozenset(
        (GENDER, c) for c in ("male", "female", "other", "unknown")
    )


# -- $translate ---------------------------------------------------------------------------------------


def matches(out: dict) -> list[tuple[str, str, str]]:
    return [
        (part(m, "equivalence"), part(m, "concept")["system"], part(m, "concept")["code"])
        for m in all_params(out, "match")
    ]


@pytest.mark.parametrize(
    ("ours", "moph"), [("pass", "1B260"), ("suspected-delay", "1B261"), ("suspected-delay-refer", "1B262")]
)
def test_dspm_result_round_trips_through_specialpp(ours: str, moph: str) -> None:
    there = translate(system=DSPM_RESULT, code=ours, target_system=SPECIALPP)
    assert params(there)["result"] is True
    assert matches(there) == [("equivalent", SPECIALPP, moph)]
    back = translate(system=SPECIALPP, code=moph, target_system=DSPM_RESULT)
    assert matches(back) == [("equivalent", DSPM_RESULT, ours)]
    reverse = translate(
        url=canonical.concept_map(canonical.CM_DSPM_RESULT_TO_MOPH), system=SPECIALPP, code=moph, reverse=True
    )
    assert matches(reverse) == [("equivalent", DSPM_RESULT, ours)]


def test_childdevelop_maps_with_equivalence() -> None:
    out = translate(system=DSPM_RESULT, code="suspected-delay-refer", target_system=CHILDDEVELOP)
    assert matches(out) == [("wider", CHILDDEVELOP, "2")]
    reverse = translate(
        url=canonical.concept_map(canonical.CM_DSPM_RESULT_TO_MOPH),
        system=CHILDDEVELOP,
        code="2",
        reverse=True,
    )
    assert matches(reverse) == [
        ("equivalent", DSPM_RESULT, "suspected-delay"),
        ("narrower", DSPM_RESULT, "suspected-delay-refer"),
    ]
    assert matches(translate(system=CHILDDEVELOP, code="3")) == [("equivalent", DSPM_RESULT, "delay")]


def test_translate_sex_and_vaccine() -> None:
    sex = canonical.code_system(canonical.CS_MOPH_SEX)
    assert matches(translate(system=sex, code="2")) == [("equivalent", GENDER, "female")]
    back = translate(
        system=GENDER, code="male", reverse=True, url=canonical.concept_map(canonical.CM_MOPH_SEX_TO_GENDER)
    )
    assert matches(back) == [("equivalent", sex, "1")]
    vaccine = canonical.code_system(canonical.CS_MOPH_VACCINE)
    assert matches(translate(system=vaccine, code="010")) == [
        ("equivalent", "http://hl7.org/fhir/sid/cvx", "19")
    ]
    no_cvx = translate(system=vaccine, code="091")
    assert params(no_cvx)["result"] is False and "No mapping" in params(no_cvx)["message"]


def test_translate_bad_input() -> None:
    with pytest.raises(FhirError) as err:
        translate(url="http://example.org/ConceptMap/none", system=DSPM_RESULT, code="pass")
    assert err.value.status == 404
    with pytest.raises(FhirError) as err:
        translate(system=DSPM_RESULT)
    assert err.value.status == 400
    assert params(translate(system=DSPM_RESULT, code="nonsense"))["result"] is False


# -- $subsumes ----------------------------------------------------------------------------------------


def outcome(out: dict) -> str:
    return params(out)["outcome"]


def test_admin_area_hierarchy() -> None:
    # แขวงพระบรมมหาราชวัง (100101) is in เขตพระนคร (1001), กรุงเทพมหานคร (10)
    assert outcome(subsumes(ADMIN, "1001", "100101")) == "subsumes"
    assert outcome(subsumes(ADMIN, "10", "100101")) == "subsumes"
    assert outcome(subsumes(ADMIN, "100101", "10")) == "subsumed-by"
    assert outcome(subsumes(ADMIN, "100101", "100101")) == "equivalent"
    assert outcome(subsumes(ADMIN, "11", "100101")) == "not-subsumed"


def test_subsumes_on_base_and_our_hierarchies() -> None:
    assert outcome(subsumes(ROLE, "PRN", "MTH")) == "subsumes"
    assert outcome(subsumes(ROLE, "STPMTH", "MTH")) == "subsumed-by"
    basis = canonical.code_system(canonical.CS_LAWFUL_BASIS)
    assert outcome(subsumes(basis, "s26", "s26-5a")) == "subsumes"
    assert outcome(subsumes(GENDER, "male", "female")) == "not-subsumed"


def test_subsumes_bad_input() -> None:
    with pytest.raises(FhirError) as err:
        subsumes(ADMIN, "10", "999999")
    assert err.value.status == 404 and err.value.expression == ["Parameters.parameter.where(name = 'codeB')"]
    with pytest.raises(FhirError) as err:
        subsumes("http://example.org/none", "a", "b")
    assert err.value.status == 404
    with pytest.raises(FhirError) as err:
        subsumes(ADMIN, None, "10")
    assert err.value.status == 400


def test_code_system_resource_by_url() -> None:
    from fhir_server.terminology import code_system

    admin = code_system(ADMIN)
    assert admin is not None and admin["count"] == 77 + 928 + 7436
    assert code_system(GENDER)["content"] == "complete"
    assert code_system("http://example.org/none") is None
