"""Index extraction over real data: HL7 examples and Synthea bundles."""

from __future__ import annotations

import pickle

import orjson

from fhir_server.search import registry
from fhir_server.search.extract import extract_index
from fhir_server.search.values import date_range, normalize
from tests.search.conftest import SYNTHEA, SearchDb, example_resources


def test_every_example_extracts_and_rows_pickle() -> None:
    total = 0
    for resource in example_resources():
        rows = extract_index(resource)
        total += rows.count()
        assert pickle.loads(pickle.dumps(rows)) == rows
    assert total > 50_000


def test_resolve_filters_by_reference_type() -> None:
    obs = {"resourceType": "Observation", "id": "x", "subject": {"reference": "Group/1"}}
    patient_key = registry.get("Observation", "patient").key
    subject_key = registry.get("Observation", "subject").key
    keys = {row[0] for row in extract_index(obs).reference}
    assert subject_key in keys and patient_key not in keys


def test_fhirpath_fallback_expression() -> None:
    # "Patient.deceased.exists() and Patient.deceased != false" needs the full engine.
    rows = extract_index({"resourceType": "Patient", "id": "x", "deceasedDateTime": "2020-01-01"})
    deceased = registry.get("Patient", "deceased").key
    assert (deceased, None, "true", 0) in rows.token


def test_fallback_expressions_run_on_the_servers_fhirpath_engine() -> None:
    """Extraction uses the engine invariants and FHIRPath Patch use (issue 19): R4 functions such as
    lowBoundary() work, and a name the R4 model lacks is an error (fhirpathpy gave an empty result)."""
    import pytest

    from fhir_server import fhirpath
    from fhir_server.search import paths

    accessor = paths.compile_expression("Patient", "Patient.birthDate.lowBoundary()")
    patient = {"resourceType": "Patient", "id": "x", "birthDate": "2015-02"}
    assert accessor(patient, [(patient, "Patient")]) == [("2015-02-01", "date")]
    named = {"resourceType": "Patient", "id": "x", "name": [{"given": ["Somchai"]}]}
    with pytest.raises(fhirpath.FhirPathError, match="given1"):
        paths._fhirpath("Patient.name.given1.lowBoundary()")(named)


def test_normalisation() -> None:
    assert normalize("Müller") == "muller"
    assert normalize("ÉCOLE") == "ecole"
    assert normalize("สมชาย") == normalize("สมชาย")
    assert "่" in normalize("แม่")  # Thai tone marks are kept


def test_date_ranges() -> None:
    assert date_range("2020") == (1577836800000, 1609459199999)
    assert date_range("2020-02")[1] - date_range("2020-02")[0] == 29 * 86400000 - 1
    assert date_range("2020-01-01T07:00:00+07:00")[0] == 1577836800000
    assert date_range("2023-13-45") is None
    assert date_range("2020-01-01T10") is None


def test_synthea_bundle_is_searchable() -> None:
    bundle = orjson.loads(sorted(SYNTHEA.glob("*.json"))[0].read_bytes())
    db = SearchDb()
    ids = {}
    for entry in bundle["entry"]:
        r = entry["resource"]
        ids[entry["fullUrl"]] = f"{r['resourceType']}/{r['id']}"
    # rewrite urn:uuid references the way a transaction would
    text = orjson.dumps([e["resource"] for e in bundle["entry"]]).decode()
    for urn, ref in ids.items():
        text = text.replace(f'"{urn}"', f'"{ref}"')
    resources = orjson.loads(text)
    db.put_all(resources)
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    found = db.idset("Observation", f"patient={patient['id']}", count=500)
    assert found == {o["id"] for o in observations}
    family = patient["name"][0]["family"]
    assert db.idset("Observation", f"patient.family={family[:3]}", count=500) == found
    assert db.idset("Patient", f"_has:Observation:patient:_id={observations[0]['id']}") == {patient["id"]}
