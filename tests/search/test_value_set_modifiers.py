"""``:in`` / ``:not-in`` against value sets, and the implied system of ``code`` elements.

A ``code`` element (Patient.gender, Observation.status) is stored without a system: FHIR defines its
namespace by the element's binding, so it is in a value set when (bound system, code) is.
"""

from __future__ import annotations

import pytest

from fhir_server import canonical
from fhir_server.search.paths import implied_code_systems
from fhir_server.search.registry import get
from tests.search.conftest import SearchDb

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
STATUS_VS = "http://hl7.org/fhir/ValueSet/observation-status"
GENDER_CS = "http://hl7.org/fhir/administrative-gender"
DSPM_RESULT_VS = canonical.value_set(canonical.CS_DSPM_RESULT)
DSPM_RESULT_CS = canonical.code_system(canonical.CS_DSPM_RESULT)
SPECIALPP_CS = canonical.code_system(canonical.CS_MOPH_SPECIALPP)


def _obs(id_: str, status: str, value: dict | None = None) -> dict:
    r: dict = {
        "resourceType": "Observation",
        "id": id_,
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
    }
    if value is not None:
        r["valueCodeableConcept"] = value
    return r


@pytest.fixture
def vsdb(db: SearchDb) -> SearchDb:
    db.put_all(
        [
            {"resourceType": "Patient", "id": "m", "gender": "male"},
            {"resourceType": "Patient", "id": "f", "gender": "female"},
            {"resourceType": "Patient", "id": "u", "gender": "unknown"},
            {"resourceType": "Patient", "id": "none"},
            _obs("final", "final", {"coding": [{"system": DSPM_RESULT_CS, "code": "pass"}]}),
            _obs("prelim", "preliminary",
                 {"coding": [{"system": DSPM_RESULT_CS, "code": "suspected-delay"}]}),
            # a MOPH SPECIALPP code only: not a member of our DSPM result value set
            _obs("moph", "amended", {"coding": [{"system": SPECIALPP_CS, "code": "1B260"}]}),
            # a CodeableConcept coding without a system is not in any value set, even with a matching code
            _obs("nosys", "final", {"coding": [{"code": "pass"}]}),
            # not an observation-status code at all (invalid data must still not match)
            _obs("bogus", "not-a-status"),
        ]
    )
    return db


def test_implied_system_comes_from_the_required_binding() -> None:
    gender = get("Patient", "gender")
    assert gender is not None
    assert implied_code_systems(gender.resource_type, gender.expression) == {GENDER_CS}
    code = get("Observation", "code")
    assert code is not None
    assert implied_code_systems(code.resource_type, code.expression) == frozenset()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (f"gender:in={GENDER_VS}", {"m", "f", "u"}),
        (f"gender:not-in={GENDER_VS}", {"none"}),
        (f"gender:in={DSPM_RESULT_VS}", set()),
        (f"gender:not-in={DSPM_RESULT_VS}", {"m", "f", "u", "none"}),
        # the implied system also works for plain system|code
        (f"gender={GENDER_CS}|female", {"f"}),
        ("gender=http://example.org/other|female", set()),
        ("gender=female", {"f"}),
    ],
)
def test_patient_gender(vsdb: SearchDb, query: str, expected: set[str]) -> None:
    assert vsdb.idset("Patient", query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (f"status:in={STATUS_VS}", {"final", "prelim", "moph", "nosys"}),
        (f"status:not-in={STATUS_VS}", {"bogus"}),
        (f"status:in={GENDER_VS}", set()),
        (f"value-concept:in={DSPM_RESULT_VS}", {"final", "prelim"}),
        (f"value-concept:not-in={DSPM_RESULT_VS}", {"moph", "nosys", "bogus"}),
        (f"value-concept:in={DSPM_RESULT_VS},{canonical.value_set(canonical.CS_MOPH_SPECIALPP)}",
         {"final", "prelim", "moph"}),
        (f"status:in={STATUS_VS}&value-concept:in={DSPM_RESULT_VS}", {"final", "prelim"}),
    ],
)
def test_observation_status_and_thai_value_set(vsdb: SearchDb, query: str, expected: set[str]) -> None:
    assert vsdb.idset("Observation", query) == expected


def test_unknown_value_set_is_a_bad_request(vsdb: SearchDb) -> None:
    from fhir_server.interactions.errors import FhirError

    with pytest.raises(FhirError) as info:
        vsdb.idset("Patient", "gender:in=http://example.org/ValueSet/nope")
    assert info.value.status in (400, 404)
