"""Copy the cases of the official FHIRPath test suite (R4) into our test data.

    python scripts/copy_fhirpath_tests.py PATH/TO/tests-fhir-r4.xml

Reads HL7's suite file (``r4/fhirpath/tests-fhir-r4.xml`` of HL7's FHIR test cases; test schema in
the FHIRPath specification's ``tests/testSchema.xsd``) and writes
``tests/fhirpath/data/fhirpath_r4_suite.json``: one record per ``<test>`` with its group,
expression, expected outputs and flags. The suite's example resources are not copied: each case names
the member of HL7's R4 examples package that holds the same resource in JSON (``input``), and the
tests read it from ``../shared/fhir/`` at run time. Suite inputs that the R4 package does not hold
(added to the suite after R4) get ``input: null`` with the original name kept in ``inputfile``; those
cases count as not passed.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fhirpath" / "data" / "fhirpath_r4_suite.json"

# Suite input file -> member of hl7.fhir.r4.examples-4.0.1.tgz with the same resource as JSON.
INPUTS = {
    "patient-example.xml": "Patient-example.json",
    "observation-example.xml": "Observation-example.json",
    "questionnaire-example.xml": "Questionnaire-3141.json",
    "valueset-example-expansion.xml": "ValueSet-example-expansion.json",
    "codesystem-example.xml": "CodeSystem-example.json",
    "appointment-examplereq.json": "Appointment-examplereq.json",
    "explanationofbenefit-example.json": "ExplanationOfBenefit-EB3500.json",
}


def _case(group: str, test: ET.Element) -> dict[str, object]:
    expression = test.find("expression")
    if expression is None:
        raise ValueError(f"test {test.get('name')} has no expression")
    inputfile = test.get("inputfile")
    case: dict[str, object] = {"group": group, "name": test.get("name"), "expression": expression.text or ""}
    if inputfile:
        case["inputfile"] = inputfile
        case["input"] = INPUTS.get(inputfile)
    # syntax | semantic | execution: the expression must be refused (at parse or at run time)
    if expression.get("invalid"):
        case["invalid"] = expression.get("invalid")
    if test.get("mode") or expression.get("mode"):
        case["mode"] = test.get("mode") or expression.get("mode")
    if test.get("predicate") == "true":
        case["predicate"] = True
    if test.get("ordered") == "false":
        case["ordered"] = False
    case["outputs"] = [
        {"type": o.get("type"), "value": o.text or ""} if o.get("type") else {"value": o.text or ""}
        for o in test.findall("output")
    ]
    return case


def convert(source: Path) -> list[dict[str, object]]:
    root = ET.parse(source).getroot()
    cases = []
    for group in root.iter("group"):
        for test in group.findall("test"):
            cases.append(_case(group.get("name") or "", test))
    return cases


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    cases = convert(Path(argv[1]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    lines = ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases)  # one case a line: readable diffs
    OUT.write_text(f"[\n{lines}\n]\n", encoding="utf-8")
    missing = sum(1 for c in cases if c.get("inputfile") and not c["input"])
    print(f"{len(cases)} cases written to {OUT.relative_to(ROOT)} ({missing} need an input R4 lacks)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
