"""Regular expressions from resources run on RE2: a catastrophic pattern cannot stall the server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fhir_server import fhirpath
from fhir_server.interactions.errors import FhirError

EVIL = "^(a+)+$"


def test_fhirpath_matches_runs_on_re2_in_every_evaluation() -> None:
    # A backtracking engine needs about 2**60 steps here; the child process would never finish.
    program = (
        "import fhirpathpy, fhir_server.fhirpath;"
        f"print(fhirpathpy.evaluate({{'resourceType': 'Patient', 'id': 'a' * 60 + '!'}},"
        f" \"Patient.id.matches('{EVIL}')\"))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[False]"
    assert fhirpath.evaluate({"resourceType": "Patient", "id": "aaa"}, f"Patient.id.matches('{EVIL}')") == [
        True
    ]
    replaced = fhirpath.evaluate(
        {"resourceType": "Patient", "id": "joe-smith"},
        "Patient.id.replaceMatches('(\\\\w+)-(\\\\w+)', '$2.$1')",
    )
    assert replaced == ["smith.joe"]


def test_patterns_re2_cannot_run_are_refused_when_written() -> None:
    from fhir_server.search.registry import _check_expression

    for pattern in ("(a)\\\\1", "(?=a)b", "a" * 3000):
        with pytest.raises(FhirError) as refused:
            _check_expression(f"Patient.id.matches('{pattern}')", "Patient")
        assert refused.value.status == 422
    _check_expression(f"Patient.id.matches('{EVIL}')", "Patient")  # linear on RE2: accepted


def test_value_set_regex_filter_runs_on_re2() -> None:
    from fhir_server.terminology import expand

    value_set = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {
            "include": [
                {
                    "system": "https://termtem.org/fhir/CodeSystem/th-agency-type",
                    "filter": [{"property": "code", "op": "regex", "value": "(h+)+ospital"}],
                }
            ]
        },
    }
    codes = [c["code"] for c in expand(value_set=value_set)["expansion"]["contains"]]
    assert codes == ["hospital"]
    value_set["compose"]["include"][0]["filter"][0]["value"] = "(s)\\1"
    with pytest.raises(FhirError) as refused:
        expand(value_set=value_set)
    assert refused.value.status == 422 and "RE2" in refused.value.diagnostics


def test_view_matches_runs_on_re2() -> None:
    from fhir_server.analytics.views.fhirpath import FhirPathError, evaluate

    resource = {"resourceType": "Patient", "id": "a" * 60 + "!"}
    assert evaluate(f"id.matches('{EVIL}')", resource) == [False]  # would never finish on backtracking
    assert evaluate(f"id.matches('{EVIL}')", {"resourceType": "Patient", "id": "aaa"}) == [True]
    with pytest.raises(FhirPathError):
        evaluate("id.matches('(a)\\\\1')", resource)
