"""The measures' search parameters: compiled accessors (no FHIRPath engine on the write path) that index
exactly the birth weight and gestational age of the right records."""

from __future__ import annotations

from fhir_server import canonical
from fhir_server.search import paths
from fhir_server.validation import profiles
from tests.perinatal import records


def _expression(sp_id: str) -> str:
    return profiles.profile(canonical.search_parameter(sp_id))["expression"]


def test_birth_weight_parameter_is_compiled_and_picks_only_birth_weights() -> None:
    expression = _expression(canonical.SP_OBSERVATION_BIRTH_WEIGHT)
    steps = paths._steps(expression[len("Observation") :])
    assert ("where-coded", "code", "http://loinc.org", "8339-4") in steps
    paths._compile_steps(steps, ("Observation", "Observation"))  # raises if it needed fhirpathpy
    accessor = paths.compile_expression("Observation", expression)
    weight = records.birth_weight(2380)
    assert [v["value"] for v, _ in accessor(weight, [(weight, "Observation")])] == [2380]
    growth = {**weight, "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}}
    assert accessor(growth, [(growth, "Observation")]) == []


def test_gestational_age_parameters() -> None:
    visit = records.antenatal("2024-08-26", 14)
    accessor = paths.compile_expression("Encounter", _expression(canonical.SP_ENCOUNTER_GESTATIONAL_AGE))
    assert [v["value"] for v, _ in accessor(visit, [(visit, "Encounter")])] == [14]
    at_birth = records.birth_weight(0)
    at_birth["code"]["coding"][0]["code"] = "76516-4"
    at_birth["valueQuantity"] = {"value": 36, "unit": "wk", "system": records.UCUM, "code": "wk"}
    accessor = paths.compile_expression("Observation", _expression(canonical.SP_OBSERVATION_GESTATIONAL_AGE))
    assert [v["value"] for v, _ in accessor(at_birth, [(at_birth, "Observation")])] == [36]
