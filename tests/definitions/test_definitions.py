"""The shipped R4 definitions: contents, loader API and byte-identical regeneration."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fhir_server import definitions

_REPO = Path(__file__).resolve().parents[2]
_SHARED_FHIR = _REPO / ".." / "shared" / "fhir"
_DATA = _REPO / "fhir_server" / "definitions" / "data"


def test_resource_types() -> None:
    types = definitions.resource_types()
    assert len(types) == 146
    assert definitions.is_resource_type("Patient")
    assert definitions.is_resource_type("MedicinalProduct")  # R4-only type is present
    assert not definitions.is_resource_type("DomainResource")  # abstract
    assert not definitions.is_resource_type("HumanName")


def test_search_parameters() -> None:
    params = definitions.search_parameters()
    assert len(params) == 1400
    by_id = {p["id"]: p for p in params}
    composite = by_id["Observation-code-value-quantity"]
    assert composite["type"] == "composite"
    assert [c["expression"] for c in composite["component"]] == ["code", "value.as(Quantity)"]
    clinical_patient = by_id["clinical-patient"]
    assert "Observation" in clinical_patient["base"] and "Patient" in clinical_patient["target"]


def test_compartments() -> None:
    patient = definitions.compartment("Patient")
    assert patient["Observation"] == ["subject", "performer"]
    assert "Patient" in patient
    assert set(definitions.compartment("Encounter")) >= {"Observation", "Condition"}
    assert definitions.compartment("Nonexistent") == {}


def test_structure_definition_by_type_and_url() -> None:
    patient = definitions.structure_definition("Patient")
    assert patient is not None
    assert patient is definitions.structure_definition(
        "http://hl7.org/fhir/StructureDefinition/Patient|4.0.1"
    )
    gender = next(e for e in patient["elements"] if e["path"] == "Patient.gender")
    assert gender["binding"]["strength"] == "required"
    assert gender["binding"]["valueSet"].split("|")[0] == "http://hl7.org/fhir/ValueSet/administrative-gender"
    status = next(
        e
        for e in definitions.structure_definition("Observation")["elements"]
        if e["path"] == "Observation.status"
    )
    assert status["min"] == 1 and status["isModifier"] is True
    assert definitions.structure_definition("NoSuchType") is None
    assert len(definitions.structure_definitions()) == 655


def test_terminology() -> None:
    vs = definitions.value_set("http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1")
    assert vs is not None and "text" not in vs
    cs = definitions.code_system("http://hl7.org/fhir/administrative-gender")
    assert [c["code"] for c in cs["concept"]] == ["male", "female", "other", "unknown"]
    expansion = definitions.value_set_expansion("http://hl7.org/fhir/ValueSet/administrative-gender")
    assert expansion["total"] == 4 and {c["code"] for c in expansion["contains"]} == {
        "male",
        "female",
        "other",
        "unknown",
    }
    assert len(definitions.value_sets()) == 1316
    assert len(definitions.code_systems()) == 1062


def test_primitive_patterns() -> None:
    assert definitions.primitive_pattern("boolean") == "true|false"
    assert definitions.primitive_pattern("date") is not None
    assert definitions.primitive_pattern("Patient") is None
    assert "dateTime" in definitions.primitive_types()


def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_definitions", _REPO / "scripts" / "generate_definitions.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate(
        _SHARED_FHIR / "hl7.fhir.r4.core-4.0.1.tgz",
        _SHARED_FHIR / "hl7.fhir.r4.expansions-4.0.1.tgz",
        tmp_path,
    )
    generated = sorted(p.name for p in tmp_path.iterdir())
    assert generated == sorted(p.name for p in _DATA.iterdir() if p.is_file())
    for name in generated:
        assert (tmp_path / name).read_bytes() == (_DATA / name).read_bytes(), name
