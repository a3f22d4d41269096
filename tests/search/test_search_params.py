"""Table-driven search tests: every parameter type, modifier and prefix against known data."""

from __future__ import annotations

import pytest

from fhir_server.interactions.errors import FhirError
from tests.search.conftest import SearchDb


def _patients(db: SearchDb) -> None:
    db.put_all(
        [
            {
                "resourceType": "Patient",
                "id": "p1",
                "gender": "female",
                "birthDate": "2019-05-14",
                "active": True,
                "name": [{"family": "Müller", "given": ["Anna"]}],
                "telecom": [{"system": "phone", "value": "0812345678"}],
                "identifier": [
                    {
                        "system": "https://terms.sil-th.org/id/th-cid",
                        "value": "1101700203451",
                        "type": {
                            "coding": [
                                {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NI"}
                            ],
                            "text": "National ID",
                        },
                    }
                ],
                "address": [{"city": "Bangkok", "district": "Bang Rak"}],
                "managingOrganization": {"reference": "Organization/o1"},
            },
            {
                "resourceType": "Patient",
                "id": "p2",
                "gender": "male",
                "birthDate": "2020",
                "active": False,
                "name": [{"family": "สมชาย", "given": ["ใจดี"]}],
                "identifier": [{"system": "http://hospital/hn", "value": "HN-2"}],
                "generalPractitioner": [{"reference": "Practitioner/dr1"}],
            },
            {
                "resourceType": "Patient",
                "id": "p3",
                "birthDate": "2018-12-31T23:30:00+07:00",
                "name": [{"family": "Mullins", "given": ["Ann"]}],
                "deceasedBoolean": True,
            },
            {
                "resourceType": "Organization",
                "id": "o1",
                "name": "Health Centre 1",
                "type": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                                "code": "prov",
                            }
                        ]
                    }
                ],
            },
            {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Somsak"}]},
        ]
    )


def _observations(db: SearchDb) -> None:
    loinc = "http://loinc.org"
    ucum = "http://unitsofmeasure.org"
    db.put_all(
        [
            {
                "resourceType": "Observation",
                "id": "w1",
                "status": "final",
                "code": {"coding": [{"system": loinc, "code": "29463-7", "display": "Body weight"}]},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": "2023-03-01T10:00:00Z",
                "valueQuantity": {"value": 12.5, "unit": "kg", "system": ucum, "code": "kg"},
            },
            {
                "resourceType": "Observation",
                "id": "w2",
                "status": "final",
                "code": {"coding": [{"system": loinc, "code": "29463-7"}]},
                "subject": {"reference": "Patient/p2"},
                "effectiveDateTime": "2023-06",
                "valueQuantity": {"value": 9800, "unit": "g", "system": ucum, "code": "g"},
            },
            {
                "resourceType": "Observation",
                "id": "h1",
                "status": "amended",
                "code": {"coding": [{"system": loinc, "code": "8302-2"}], "text": "Body height"},
                "subject": {"reference": "Patient/p1"},
                "effectivePeriod": {"start": "2023-01-01", "end": "2023-01-31"},
                "valueQuantity": {"value": 100, "unit": "cm", "system": ucum, "code": "cm"},
            },
            {
                "resourceType": "Observation",
                "id": "bp",
                "status": "final",
                "code": {"coding": [{"system": loinc, "code": "85354-9"}]},
                "subject": {"reference": "Patient/p3"},
                "component": [
                    {
                        "code": {"coding": [{"system": loinc, "code": "8480-6"}]},
                        "valueQuantity": {"value": 120, "system": ucum, "code": "mm[Hg]"},
                    },
                    {
                        "code": {"coding": [{"system": loinc, "code": "8462-4"}]},
                        "valueQuantity": {"value": 80, "system": ucum, "code": "mm[Hg]"},
                    },
                ],
            },
            {
                "resourceType": "Observation",
                "id": "c1",
                "status": "final",
                "code": {"coding": [{"system": loinc, "code": "X"}]},
                "subject": {"reference": "Group/g1"},
                "valueCodeableConcept": {
                    "coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]
                },
            },
        ]
    )


@pytest.fixture(scope="module")
def data() -> SearchDb:
    db = SearchDb()
    _patients(db)
    _observations(db)
    return db


CASES = [
    # string: starts-with, case and accent insensitive, :exact, :contains, Thai
    ("Patient", "name=mul", {"p1", "p3"}),
    ("Patient", "name=MULLER", {"p1"}),
    ("Patient", "family:exact=Müller", {"p1"}),
    ("Patient", "family:exact=muller", set()),
    ("Patient", "name:contains=lin", {"p3"}),
    ("Patient", "name=สม", {"p2"}),
    ("Patient", "given=ใจ", {"p2"}),
    ("Patient", "name=ann,somsak", {"p1", "p3"}),
    ("Patient", "address-city=bangkok", {"p1"}),
    ("Patient", "address=bang", {"p1"}),
    # token
    ("Patient", "gender=female", {"p1"}),
    ("Patient", "gender:not=female", {"p2", "p3"}),
    ("Patient", "gender:missing=true", {"p3"}),
    ("Patient", "gender:missing=false", {"p1", "p2"}),
    ("Patient", "active=true", {"p1"}),
    ("Patient", "active=false", {"p2"}),
    ("Patient", "identifier=1101700203451", {"p1"}),
    ("Patient", "identifier=https://terms.sil-th.org/id/th-cid|1101700203451", {"p1"}),
    ("Patient", "identifier=http://hospital/hn|", {"p2"}),
    ("Patient", "identifier=|HN-2", set()),
    ("Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|NI|1101700203451", {"p1"}),
    ("Patient", "identifier:text=national", {"p1"}),
    ("Patient", "phone=0812345678", {"p1"}),
    ("Patient", "telecom=0812345678", {"p1"}),
    ("Patient", "deceased=true", {"p3"}),
    ("Observation", "code=29463-7", {"w1", "w2"}),
    ("Observation", "code=http://loinc.org|8302-2", {"h1"}),
    ("Observation", "code:text=body", {"w1", "h1"}),
    ("Observation", "status=final,amended", {"w1", "w2", "h1", "bp", "c1"}),
    ("Observation", "value-concept=http://snomed.info/sct|260385009", {"c1"}),
    # date prefixes, partial dates, periods
    ("Patient", "birthdate=2019", {"p1"}),
    ("Patient", "birthdate=2019-05", {"p1"}),
    ("Patient", "birthdate=2019-05-14", {"p1"}),
    ("Patient", "birthdate=2020-03-01", set()),
    ("Patient", "birthdate=ne2019-05-14", {"p2", "p3"}),
    ("Patient", "birthdate=gt2019-05-14", {"p2"}),
    ("Patient", "birthdate=ge2019-05-14", {"p1", "p2"}),
    ("Patient", "birthdate=lt2019", {"p3"}),
    ("Patient", "birthdate=le2019-05-14", {"p1", "p3"}),
    ("Patient", "birthdate=sa2019-06", {"p2"}),
    ("Patient", "birthdate=eb2019-06", {"p1", "p3"}),
    ("Patient", "birthdate=2018-12-31", {"p3"}),  # 23:30+07:00 is 16:30Z the same day
    ("Patient", "birthdate=ap2019-05-20", {"p1", "p2", "p3"}),  # 10% of the distance from today
    ("Patient", "birthdate=ap2010-01-01", set()),
    ("Patient", "birthdate=ge2019&birthdate=lt2020", {"p1"}),
    ("Observation", "date=2023-01-15", set()),
    ("Observation", "date=2023-01", {"h1"}),
    ("Observation", "date=gt2023-01-15", {"h1", "w1", "w2"}),
    ("Observation", "date=lt2023-01-15", {"h1"}),
    ("Observation", "date=2023-06-10", set()),
    ("Observation", "date=2023-06", {"w2"}),
    ("Observation", "date=ge2023-06-10", {"w2"}),
    ("Observation", "date:missing=true", {"bp", "c1"}),
    # quantity: prefixes, precision, units
    ("Observation", "value-quantity=12.5", {"w1"}),
    ("Observation", "value-quantity=12", set()),
    ("Observation", "value-quantity=1e1", {"w1"}),
    ("Observation", "value-quantity=gt100", {"w2"}),
    ("Observation", "value-quantity=ge100", {"w2", "h1"}),
    ("Observation", "value-quantity=lt50", {"w1"}),
    ("Observation", "value-quantity=ap11.5", {"w1"}),
    ("Observation", "value-quantity=12.5|http://unitsofmeasure.org|kg", {"w1"}),
    ("Observation", "value-quantity=12500|http://unitsofmeasure.org|g", {"w1"}),
    ("Observation", "value-quantity=9.8|http://unitsofmeasure.org|kg", {"w2"}),
    ("Observation", "value-quantity=gt10|http://unitsofmeasure.org|kg", {"w1"}),
    ("Observation", "value-quantity=1|http://unitsofmeasure.org|m", {"h1"}),
    ("Observation", "value-quantity=100||cm", {"h1"}),
    ("Observation", "value-quantity=ne12.5", {"w2", "h1"}),
    # composite
    ("Observation", "code-value-quantity=http://loinc.org|29463-7$gt10", {"w1", "w2"}),
    ("Observation", "code-value-quantity=http://loinc.org|29463-7$lt10|http://unitsofmeasure.org|kg", {"w2"}),
    ("Observation", "component-code-value-quantity=http://loinc.org|8480-6$120", {"bp"}),
    ("Observation", "component-code-value-quantity=http://loinc.org|8480-6$80", set()),
    ("Observation", "combo-code-value-quantity=http://loinc.org|8462-4$80", {"bp"}),
    # reference forms
    ("Observation", "subject=Patient/p1", {"w1", "h1"}),
    ("Observation", "subject:Patient=p1", {"w1", "h1"}),
    ("Observation", "patient=p1", {"w1", "h1"}),
    ("Observation", "subject=http://testserver/fhir/Patient/p2", {"w2"}),
    ("Observation", "subject:Group=g1", {"c1"}),
    ("Observation", "patient=Patient/p1,Patient/p3", {"w1", "h1", "bp"}),
    ("Observation", "subject:missing=true", set()),
    ("Patient", "organization=o1", {"p1"}),
    ("Patient", "general-practitioner:missing=true", {"p1", "p3"}),
    # chaining and _has
    ("Observation", "subject:Patient.name=anna", {"w1", "h1"}),
    ("Observation", "patient.gender=male", {"w2"}),
    ("Observation", "patient.organization.name=health", {"w1", "h1"}),
    ("Observation", "patient.organization.type=prov", {"w1", "h1"}),
    ("Patient", "_has:Observation:patient:code=8302-2", {"p1"}),
    ("Patient", "_has:Observation:subject:value-quantity=lt10|http://unitsofmeasure.org|kg", {"p2"}),
    ("Organization", "_has:Patient:organization:_has:Observation:patient:code=29463-7", {"o1"}),
    # common parameters
    ("Patient", "_id=p1,p3", {"p1", "p3"}),
    ("Patient", "_lastUpdated=gt2000", {"p1", "p2", "p3"}),
    ("Patient", "_lastUpdated=lt2000", set()),
    ("Patient", "_id:missing=true", set()),
]


@pytest.mark.parametrize(("rtype", "query", "expected"), CASES, ids=[f"{t}?{q}" for t, q, _ in CASES])
def test_search(data: SearchDb, rtype: str, query: str, expected: set[str]) -> None:
    assert data.idset(rtype, query) == expected


BAD = [
    ("Patient", "birthdate=2023-13-45", "birthdate"),
    ("Patient", "birthdate=abc", "birthdate"),
    ("Observation", "value-quantity=abc", "value-quantity"),
    ("Patient", "name=ge2020", "name"),
    ("Patient", "name:nonsense=x", "name:nonsense"),
    ("Patient", "gender.name=x", "gender.name"),
    ("Patient", "gender:missing=maybe", "gender:missing"),
    ("Patient", "_count=abc", "_count"),
    ("Patient", "_sort=nonsense", "_sort"),
    ("Patient", "_include=Patient:name", "_include"),
    ("Patient", "unknown-param=1", "unknown-param"),
    ("Observation", "code-value-quantity=http://loinc.org|1", "code-value-quantity"),
    ("Patient", "_has:Observation:code:status=final", "_has:Observation:code:status"),
    ("Patient", "_total=maybe", "_total"),
    ("Patient", "_summary=maybe", "_summary"),
]


@pytest.mark.parametrize(("rtype", "query", "name"), BAD, ids=[q for _, q, _ in BAD])
def test_bad_input_is_400_naming_the_parameter(data: SearchDb, rtype: str, query: str, name: str) -> None:
    with pytest.raises(FhirError) as info:
        data.ids(rtype, query)
    assert info.value.status == 400
    assert info.value.expression == [name]


def test_unknown_parameter_ignored_when_lenient(data: SearchDb) -> None:
    page_ids = data.idset("Patient", "unknown-param=1&gender=male", strict=False)
    assert page_ids == {"p2"}


def test_sql_injection_is_just_a_value(data: SearchDb) -> None:
    assert data.idset("Patient", "name=x' OR 1=1 --") == set()
    assert data.idset("Patient", "_id=p1'); DROP TABLE resource; --") == set()
    assert data.idset("Patient", "_id=p1") == {"p1"}


def test_deleted_resources_do_not_match() -> None:
    db = SearchDb()
    _patients(db)
    db.delete("Patient", "p1")
    assert db.idset("Patient", "gender=female") == set()
    assert db.idset("Patient", "") == {"p2", "p3"}


def test_update_replaces_index_rows() -> None:
    db = SearchDb()
    _patients(db)
    db.put({"resourceType": "Patient", "id": "p1", "gender": "male"})
    assert db.idset("Patient", "gender=female") == set()
    assert db.idset("Patient", "gender=male") == {"p1", "p2"}
    assert db.idset("Patient", "name=anna") == set()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("_sort=birthdate", ["p3", "p1", "p2"]),
        ("_sort=-birthdate", ["p2", "p1", "p3"]),
        ("_sort=family", ["p1", "p3", "p2"]),  # muller < mullins < Thai (code point order)
        ("_sort=-family", ["p2", "p3", "p1"]),
        ("_sort=gender,-_id", ["p1", "p2", "p3"]),  # missing gender sorts last
        ("_sort=-gender,_id", ["p2", "p1", "p3"]),
        ("_sort=organization,_id", ["p1", "p2", "p3"]),
        ("_sort=-_id", ["p3", "p2", "p1"]),
    ],
)
def test_sort(data: SearchDb, query: str, expected: list[str]) -> None:
    assert data.ids("Patient", query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("_sort=value-quantity,_id", ["h1", "w2", "w1", "bp", "c1"]),  # canonical: 1 m, 9800 g, 12500 g
        ("_sort=-date,_id", ["w2", "w1", "h1", "bp", "c1"]),
    ],
)
def test_sort_observations(data: SearchDb, query: str, expected: list[str]) -> None:
    assert data.ids("Observation", query)[: len(expected)] == expected


def test_includes(data: SearchDb) -> None:
    page = data.page("Observation", "code=8302-2&_include=Observation:patient")
    assert [m.id for m in page.matches] == ["h1"]
    assert [i.id for i in page.included] == ["p1"]
    page = data.page(
        "Observation", "code=8302-2&_include=Observation:patient&_include:iterate=Patient:organization"
    )
    assert [i.id for i in page.included] == ["p1", "o1"]
    page = data.page("Observation", "code=8302-2&_include=Observation:subject:Group")
    assert page.included == []
    page = data.page("Patient", "_id=p1&_revinclude=Observation:subject")
    assert {i.id for i in page.included} == {"w1", "h1"}
    page = data.page("Patient", "_id=p2&_revinclude=*")
    assert {i.id for i in page.included} == {"w2"}
    page = data.page("Patient", "_id=p2&_include=*")
    assert {i.id for i in page.included} == {"dr1"}


def test_has_with_include_iterate(data: SearchDb) -> None:
    page = data.page(
        "Organization",
        "_has:Patient:organization:_has:Observation:patient:code=29463-7"
        "&_revinclude=Patient:organization&_revinclude:iterate=Observation:patient",
    )
    assert [m.id for m in page.matches] == ["o1"]
    assert {i.id for i in page.included} == {"p1", "w1", "h1"}


def test_compartment(data: SearchDb) -> None:
    assert data.idset("Observation", "", compartment=("Patient", "p1")) == {"w1", "h1"}
    assert data.idset("Observation", "code=8302-2", compartment=("Patient", "p1")) == {"h1"}
    assert data.idset("Patient", "", compartment=("Patient", "p1")) == {"p1"}
    assert data.idset(None, "", compartment=("Patient", "p2")) == {"w2", "p2"}
    with pytest.raises(FhirError) as info:
        data.ids("Organization", "", compartment=("Patient", "p1"))
    assert info.value.status == 400


def test_system_search(data: SearchDb) -> None:
    assert data.idset(None, "_type=Patient,Organization&_id=p1,o1") == {"p1", "o1"}
    assert data.idset(None, "_id=dr1") == {"dr1"}


def test_total_and_count(data: SearchDb) -> None:
    page = data.page("Observation", "_count=2")
    assert len(page.matches) == 2 and page.total is None and page.next_cursor
    page = data.page("Observation", "_count=2&_total=accurate")
    assert page.total == 5
    page = data.page("Observation", "_count=0")
    assert page.matches == [] and page.total == 5
    page = data.page("Observation", "_summary=count&code=29463-7")
    assert page.matches == [] and page.total == 2
    page = data.page("Observation", "code=29463-7")
    assert page.total == 2  # the page is not full: the total is known for free


def test_count_clamped_with_warning(data: SearchDb) -> None:
    page = data.page("Observation", "_count=100000")
    assert any("exceeds" in w for w in page.warnings)
