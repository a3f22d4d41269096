"""The FHIRPath engine's behaviours the server relies on, beyond the official suite."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server import fhirpath
from fhir_server.validation.validator import validate


def _eval(expression: str, data: Any = None, **kwargs: Any) -> list[Any]:
    return [
        fhirpath.plain(x) for x in fhirpath.evaluate(data if data is not None else {}, expression, **kwargs)
    ]


@pytest.mark.parametrize(
    "expression",
    [
        "Patient.name.where(",
        "2 + 2 /",
        "2 + 2 /* not finished",
        "(1 | 2",
        "name.given..first()",
        "frobnicate()",
        "Patient.name.substring()",
    ],
)
def test_invalid_expressions_are_refused_when_compiled(expression: str) -> None:
    with pytest.raises(fhirpath.FhirPathError):
        fhirpath.compile(expression)


@pytest.mark.parametrize(
    "expression",
    ["Patient.name.given1", "Observation.valueQuantity.unit", "Patient.gender.as(string1)"],
)
def test_names_the_model_does_not_know_are_refused(expression: str) -> None:
    data = (
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueQuantity": {"unit": "kg"},
        }
        if expression.startswith("Observation")
        else {"resourceType": "Patient", "name": [{"given": ["a"]}], "gender": "male"}
    )
    with pytest.raises(fhirpath.FhirPathError):
        fhirpath.evaluate(data, expression)


def test_a_choice_value_of_another_type_just_has_no_such_child() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueString": "twelve"}
    assert _eval("Observation.value.system", obs) == []
    assert _eval("Observation.value.is(string)", obs) == [True]


def test_a_type_name_at_the_head_of_a_path_is_the_resource_itself() -> None:
    """R4 app-4 starts with the resource type; it used to evaluate to empty and was never enforced."""
    appointment = {
        "resourceType": "Appointment",
        "status": "booked",
        "participant": [{"status": "accepted", "actor": {"reference": "Patient/1"}}],
        "cancelationReason": {"text": "ill"},
        "start": "2024-01-01T10:00:00+07:00",
        "end": "2024-01-01T11:00:00+07:00",
    }
    rule = (
        "Appointment.cancelationReason.exists() implies "
        "(Appointment.status='no-show' or Appointment.status='cancelled')"
    )
    assert _eval(rule, appointment) == [False]
    errors = [i["diagnostics"] for i in validate(appointment) if i["severity"] == "error"]
    assert any("app-4" in e for e in errors)
    appointment["status"] = "cancelled"
    assert _eval(rule, appointment) == [True]
    assert not [i for i in validate(appointment) if i["severity"] == "error"]


def test_dates_times_and_offsets() -> None:
    assert _eval("@2017-11-05T01:30:00.0-04:00 = @2017-11-05T00:30:00.0-05:00") == [True]
    assert _eval("@2012-04-15T15:00:00Z = @2012-04-15T10:00:00") == []  # one offset unknown
    assert _eval("@2012-04-15 = @2012-04-15T10:00:00") == []  # different precisions
    assert [str(x) for x in fhirpath.evaluate({}, "@1973-12-25T00:00:00.000+10:00 + 7 days")] == [
        "1974-01-01T00:00:00.000+10:00"
    ]
    assert [str(x) for x in fhirpath.evaluate({}, "@2020-01-31 + 1 month")] == ["2020-02-29"]
    with pytest.raises(fhirpath.FhirPathError):
        fhirpath.evaluate({}, "@1973-12-25 + 1 'mo'")  # UCUM months are not calendar months
    assert _eval("Patient.birthDate < today()", {"resourceType": "Patient", "birthDate": "2015-02-27"}) == [
        True
    ]


def test_quantities_with_ucum_units() -> None:
    assert _eval("4.0000 'g' = 4000.0 'mg'") == [True]
    assert _eval("7 days = 1 'wk'") == [True]
    assert _eval("1 year = 1 'a'") == []  # a calendar year is not a UCUM year
    assert _eval("2.0 'cm' * 2.0 'm' = 0.040 'm2'") == [True]
    assert _eval("1 'cm'.comparable(1 '[in_i]')") == [True]
    weight = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "valueQuantity": {"value": 12.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }
    assert _eval("Observation.value > 12000 'g'", weight) == [True]


def test_boundaries_precision_and_sort() -> None:
    assert [str(x) for x in fhirpath.evaluate({}, "1.587.lowBoundary()")] == ["1.58650000"]
    assert [str(x) for x in fhirpath.evaluate({}, "@2014.highBoundary(6)")] == ["2014-12"]
    # without a precision a Date keeps the greatest precision of its own type (a day), not a DateTime's
    assert [str(x) for x in fhirpath.evaluate({}, "@2015-02.lowBoundary()")] == ["2015-02-01"]
    assert [str(x) for x in fhirpath.evaluate({}, "@2016-02.highBoundary()")] == ["2016-02-29"]
    assert _eval("@2014-01-05T10:30:00.000.precision()") == [17]
    assert _eval("(3 | 1 | 2).sort(-$this)") == [3, 2, 1]


def test_regular_expressions_and_strings() -> None:
    assert _eval("'http://x/Library/A|1'.matchesFull('.*Library.*')") == [True]
    assert _eval("'A\nB'.matches('A.B')") == [True]  # single-line mode
    assert _eval("'\"1<2\"'.escape('html')") == ["&quot;1&lt;2&quot;"]
    with pytest.raises(fhirpath.FhirPathError):
        _eval("'abc'.matches('(')")


def test_variables_and_resolve() -> None:
    assert _eval("%loinc") == ["http://loinc.org"]
    assert _eval("%`vs-administrative-gender`") == ["http://hl7.org/fhir/ValueSet/administrative-gender"]
    with pytest.raises(fhirpath.FhirPathError):
        _eval("%nonsense")
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/1"},
    }
    stored = {"Patient/1": {"resourceType": "Patient", "id": "1", "birthDate": "2020-01-01"}}
    assert _eval("Observation.subject.resolve().birthDate", obs, resolver=stored.get) == ["2020-01-01"]
    assert _eval("Observation.subject.resolve() is Patient", obs, resolver=stored.get) == [True]


def test_string_functions_take_the_text_of_a_fhir_date_or_time_element() -> None:
    """A ``date``/``dateTime``/``instant``/``time`` element is a string in FHIR JSON; string functions read
    that text (views write ``authoredOn.substring(0, 10)``), as the spec's examples on strings give."""
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "effectiveDateTime": "2024-05-06T10:00:00+07:00",
        "issued": "2024-05-06T03:00:00.000Z",
    }
    patient = {"resourceType": "Patient", "birthDate": "2020-02-03"}
    assert _eval("Observation.effective.ofType(dateTime).substring(0, 10)", obs) == ["2024-05-06"]
    assert _eval("Observation.issued.substring(11)", obs) == ["03:00:00.000Z"]
    assert _eval("Patient.birthDate.substring(0, 4)", patient) == ["2020"]
    assert _eval("Patient.birthDate.startsWith('2020-02')", patient) == [True]
    assert _eval("Patient.birthDate.length()", patient) == [10]
    assert _eval("Patient.birthDate.replace('-', '')", patient) == ["20200203"]
    assert _eval("Patient.birthDate.substring(10)", patient) == []  # start past the end: empty
    # the spec's examples on strings are unchanged
    assert _eval("'abcdefg'.substring(3)") == ["defg"]
    assert _eval("'abcdefg'.substring(1, 2)") == ["bc"]
    assert _eval("'abcdefg'.substring(6, 2)") == ["g"]
    assert _eval("'abcdefg'.substring(7, 1)") == []


@pytest.mark.parametrize(
    "expression",
    ["@2024-01-01.substring(0, 4)", "today().substring(0, 4)", "(1).substring(0)", "true.length()"],
)
def test_string_functions_on_system_values_that_are_not_strings_are_errors(expression: str) -> None:
    with pytest.raises(fhirpath.FhirPathError):
        fhirpath.evaluate({}, expression)
