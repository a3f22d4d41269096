"""The validator over every non-definition HL7 R4 example: no errors except where the spec is wrong."""

from __future__ import annotations

import json
import tarfile

from fhir_server.validation.validator import validate
from tests.validation.conftest import ROOT

PACKAGE = ROOT / ".." / "shared" / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz"

# Conformance and terminology resources are definitions, not example data (bundles of them are kept).
DEFINITION_TYPES = frozenset(
    {
        "StructureDefinition",
        "ValueSet",
        "CodeSystem",
        "SearchParameter",
        "OperationDefinition",
        "CapabilityStatement",
        "ConceptMap",
        "NamingSystem",
        "CompartmentDefinition",
        "ImplementationGuide",
        "StructureMap",
        "GraphDefinition",
        "MessageDefinition",
        "TerminologyCapabilities",
        "ExampleScenario",
    }
)

# Examples the R4 specification itself gets wrong (file -> why).
SPEC_ERRORS = {
    "Questionnaire-qs1.json": "nested items have no linkId, which is required (1..1)",
    "DeviceMetric-example.json": "parent refers to a DeviceDefinition; only Device is allowed",
    "DeviceUseStatement-example.json": "reasonReference refers to a Procedure, not allowed in R4",
    "MedicationRequest-medrx0301.json": "dispenseRequest.performer is a Practitioner, not an Organization",
    "Observation-clinical-gender.json": "performer refers to an Encounter, which is not allowed",
    "Bundle-dataelements.json": "bdl-7: a collection with duplicate fullUrls (de-Quantity.value, ...)",
    "ActivityDefinition-blood-tubes-supply.json": "txt-2: the narrative div holds only whitespace",
    "ActivityDefinition-heart-valve-replacement.json": "txt-2: the narrative div holds only whitespace",
    "EventDefinition-example.json": "txt-2: the narrative div holds only whitespace",
    "Questionnaire-zika-virus-exposure-assessment.json": "txt-2: the narrative div holds only whitespace",
    "Bundle-10bb101f-a121-4264-a920-67be9cb82c74.json": "fullUrl .../Patient/pat12 holds Patient/pat2 "
    "(fullUrl SHALL NOT disagree with the id)",
    "Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json": "fullUrl .../Patient/pat12 holds Patient/pat2",
    "Bundle-lri-example.json": "fullUrls .../Observation/lri-gramstain1, 2 hold Observation/gramstain1, 2",
    "Observation-f202.json": "a vital-signs body temperature without effective[x] (the R4 bodytemp profile)",
    "DiagnosticReport-example-pgx.json": "presentedForm.hash is not the SHA-1 of its data (Attachment.hash)",
}


def _examples() -> list[tuple[str, dict]]:
    out = []
    with tarfile.open(PACKAGE) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if not name.endswith(".json") or name.startswith(".") or name == "package.json":
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            r = json.load(f)
            if not isinstance(r, dict) or r.get("resourceType") in DEFINITION_TYPES:
                continue
            out.append((name, r))
    return out


def test_valid_examples_have_no_errors():
    examples = _examples()
    assert len(examples) > 600
    failing = {}
    for name, resource in examples:
        errs = [i["diagnostics"] for i in validate(resource) if i["severity"] == "error"]
        if errs:
            failing[name] = errs
    assert set(failing) == set(SPEC_ERRORS), {k: v[:3] for k, v in failing.items() if k not in SPEC_ERRORS}
