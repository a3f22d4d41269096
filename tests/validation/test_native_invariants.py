"""Our Python versions of hot invariants agree with the FHIRPath the profiles publish."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from fhir_server import canonical
from fhir_server.validation import invariants
from fhir_server.validation.model import Constraint
from fhir_server.validation.profiles import profile

GROWTH = canonical.structure_definition(canonical.PROFILE_GROWTH)


def published(key: str) -> Constraint:
    for element in profile(GROWTH)["differential"]["element"]:
        for constraint in element.get("constraint", []):
            if constraint["key"] == key:
                return Constraint(
                    f"{key}-fhirpath", "error", constraint["expression"], constraint["human"], GROWTH
                )
    raise AssertionError(f"{key} is not in the profile")


def observations() -> list[dict[str, Any]]:
    codes = [
        [{"system": "http://loinc.org", "code": "29463-7"}],
        [{"system": "http://loinc.org", "code": "8302-2"}],
        [{"system": "http://loinc.org", "code": "39156-5"}],
        [{"system": "http://loinc.org", "code": "1234-5"}],
        [{"system": "http://snomed.info/sct", "code": "29463-7"}],
        [{"system": "http://loinc.org", "code": "1234-5"}, {"system": "http://loinc.org", "code": "8306-3"}],
        [],
    ]
    values: list[dict[str, Any] | None] = [
        None,
        {"valueQuantity": {"value": 12.5, "system": "http://unitsofmeasure.org", "code": "kg"}},
        {"valueQuantity": {"value": 12500, "system": "http://unitsofmeasure.org", "code": "g"}},
        {"valueQuantity": {"value": 90, "system": "http://unitsofmeasure.org", "code": "cm"}},
        {"valueQuantity": {"value": 15, "system": "http://unitsofmeasure.org", "code": "kg/m2"}},
        {"valueQuantity": {"value": 90, "unit": "cm"}},
        {"valueQuantity": {"value": 12.5, "system": "http://example.org/units", "code": "kg"}},
        {"valueString": "about twelve kilos"},
    ]
    out = []
    for coding, value in itertools.product(codes, values):
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": coding},
        }
        out.append({**resource, **(value or {})})
    return out


@pytest.mark.parametrize("key", sorted(invariants.NATIVE_RULES))
def test_native_rule_agrees_with_the_published_fhirpath(key: str) -> None:
    constraint = published(key)
    disagreements = []
    for resource in observations():
        fhirpath = invariants.evaluate(constraint, resource, "Observation", resource, resource)
        native = invariants.NATIVE_RULES[key](resource)
        if fhirpath is not native:
            disagreements.append((resource, fhirpath, native))
    assert disagreements == []
