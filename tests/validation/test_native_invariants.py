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


# --- the native shortcuts for common invariant shapes (invariants._fast) ---------------------------

_CORPUS_TYPES = frozenset(
    {"Observation", "Patient", "Condition", "Encounter", "Immunization", "Procedure", "MedicationRequest",
     "AllergyIntolerance", "Consent", "RelatedPerson", "ServiceRequest", "Task"}
)  # fmt: skip


def _corpus(tmp_path: Any) -> list[dict[str, Any]]:
    """HL7 R4 examples of common types, a Synthea bundle's entries and a generated Thai household."""
    import json
    import tarfile

    from fhir_server.synthetic import write_transaction_bundles
    from tests.validation.conftest import ROOT

    shared = ROOT / ".." / "shared"
    out: list[dict[str, Any]] = []
    with tarfile.open(shared / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".json"):
                handle = tar.extractfile(member)
                assert handle is not None
                resource = json.load(handle)
                if resource.get("resourceType") in _CORPUS_TYPES:
                    out.append(resource)
    write_transaction_bundles(tmp_path, 1, 3)
    for bundle in sorted(tmp_path.glob("bundle-*.json"))[1:2]:
        out.extend(e["resource"] for e in json.loads(bundle.read_text())["entry"])
    return out


def test_native_shortcuts_agree_with_the_fhirpath_engine(tmp_path: Any, monkeypatch: Any) -> None:
    """Wherever a shortcut answers during validation, the FHIRPath engine gives the same answer."""
    from fhir_server.validation.validator import validate

    original = invariants.evaluate
    decided: dict[str, int] = {}
    disagreements: list[tuple[str, str, Any, Any, Any]] = []

    def spy(constraint: Constraint, data: Any, type_path: str, resource: Any, root: Any, *rest: Any) -> Any:
        result = original(constraint, data, type_path, resource, root, *rest)
        fast = invariants._fast(constraint.expression)
        if constraint.key in invariants.NATIVE_RULES or constraint.key in invariants.NATIVE_SHORTCUTS:
            return result
        if fast is None:
            return result
        try:
            quick = fast(data, type_path)
        except (TypeError, AttributeError, KeyError, ValueError, IndexError):
            return result
        if quick is None:
            return result
        decided[constraint.key] = decided.get(constraint.key, 0) + 1
        engine = invariants.by_engine(constraint, data, type_path, resource, root)
        if engine != quick:
            disagreements.append((constraint.key, type_path, data, quick, engine))
        return result

    monkeypatch.setattr(invariants, "evaluate", spy)
    for resource in _corpus(tmp_path):
        validate(resource)
    assert disagreements == []
    # the shortcuts carry the hot rules: the vital signs rules and the usual exists/empty shapes
    for key in ("vs-1", "vs-2", "vs-3", "obs-6", "obs-7", "dom-6"):
        assert decided.get(key, 0) > 5, (key, decided.get(key))


@pytest.mark.parametrize(
    ("expression", "data", "type_path", "expected"),
    [
        ("(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or value.exists())",
         {"valueQuantity": {"value": 1}}, "Observation", True),
        ("(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or value.exists())",
         {"status": "final"}, "Observation", False),
        ("(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or value.exists())",
         {"component": [{}]}, "Observation", True),
        ("(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or value.exists())",
         {"_valueString": {"extension": []}}, "Observation", None),
        ("($this as dateTime).toString().length() >= 8", "2019-04", "dateTime", False),
        ("($this as dateTime).toString().length() >= 8", "2019-04-15", "dateTime", True),
        ("($this as dateTime).toString().length() >= 8", {"start": "2019"}, "Period", None),
        ("dataAbsentReason.empty() or value.empty()", {"valueQuantity": {}, "dataAbsentReason": {}},
         "Observation", False),
        ("a.exists() xor b.exists()", {"a": 1}, "Observation", None),
    ],
)  # fmt: skip
def test_native_shortcut_answers(expression: str, data: Any, type_path: str, expected: bool | None) -> None:
    fast = invariants._fast(expression)
    assert fast is not None or expected is None
    assert (fast(data, type_path) if fast is not None else None) is expected


def _published_anywhere(key: str) -> Constraint:
    from fhir_server.validation import profiles
    from fhir_server.validation.model import compiled

    profiles.ensure_registered()
    for url in (canonical.structure_definition(canonical.PROFILE_CHILD_PATIENT),):
        sd = compiled(url)
        assert sd is not None
        for node in sd.by_id.values():
            for constraint in node.constraints:
                if constraint.key == key:
                    return Constraint(
                        f"{key}-fhirpath", "error", constraint.expression, constraint.human, url
                    )
    raise AssertionError(f"{key} is not in the profile")


def _identifiers() -> list[dict[str, Any]]:
    ids = [
        "1101700230708",
        "1101700230705",
        "3100600375416",
        "3100600375411",
        "5000000000001",
        "0000000000000",
        "1234567890121",
        "123456789012",
        "12345678901234",
        "11017OO230705",
        "1101700230705\n",
        "",
        "๑๑๐๑๗๐๐๒๓๐๗๐๕",
    ]
    out: list[dict[str, Any]] = [{"system": "https://termtem.org/fhir/sid/th-cid", "value": v} for v in ids]
    out.append({"system": "https://termtem.org/fhir/sid/th-cid"})
    out.append({"_value": {"extension": [{"url": "http://example.org/x", "valueString": "x"}]}})
    return out


@pytest.mark.parametrize("key", sorted(invariants.NATIVE_SHORTCUTS))
def test_native_shortcut_rule_agrees_with_the_published_fhirpath(key: str) -> None:
    constraint = _published_anywhere(key)
    disagreements, answered = [], 0
    for identifier in _identifiers():
        resource = {"resourceType": "Patient", "identifier": [identifier]}
        native = invariants.NATIVE_SHORTCUTS[key](identifier, "Identifier")
        if native is None:
            continue
        answered += 1
        fhirpath = invariants.by_engine(constraint, identifier, "Identifier", resource, resource)
        if fhirpath is not native:
            disagreements.append((identifier, fhirpath, native))
    assert disagreements == []
    assert answered >= len(_identifiers()) - 1
