"""The validator's memo of top-level sub-walks (``validator._memoised``) answers exactly what walking
again answers: the same findings, worded and located the same, in the same order.

The corpus is every HL7 R4 example under 60 kB (5,039 of 5,306: the large definition bundles and code
systems would only slow the test), a Synthea bundle's entries and generated Thai households (the
benchmark's bundle is one of these). Each resource is validated with the memo off, then twice with
it on (the second pass answered largely from the memo).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from fhir_server.validation import validator
from fhir_server.validation.validator import validate
from tests.validation.conftest import ROOT

SHARED = ROOT / ".." / "shared"


def _corpus(folder: Path) -> list[dict[str, Any]]:
    from fhir_server.synthetic import write_transaction_bundles

    out: list[dict[str, Any]] = []
    with tarfile.open(SHARED / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".json") and member.size < 60_000:
                handle = tar.extractfile(member)
                assert handle is not None
                resource = json.load(handle)
                if isinstance(resource, dict) and "resourceType" in resource:
                    out.append(resource)
    synthea = sorted((SHARED / "testdata" / "synthea" / "R4").glob("*.json"))[0]
    out.extend(e["resource"] for e in json.loads(synthea.read_text())["entry"])
    write_transaction_bundles(folder, 1, 6)
    for bundle in sorted(folder.glob("bundle-*.json"))[1:]:  # households, not the agencies
        out.extend(e["resource"] for e in json.loads(bundle.read_text())["entry"])
    return out


def test_the_memo_answers_what_the_walk_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = _corpus(tmp_path)
    monkeypatch.setattr(validator, "memo_enabled", False)
    walked = [validate(r) for r in corpus]
    monkeypatch.setattr(validator, "memo_enabled", True)
    validator._MEMO.clear()
    filling = [validate(r) for r in corpus]
    hits = validator.memo_hits
    replayed = [validate(r) for r in corpus]
    assert validator.memo_hits - hits > len(corpus)  # the memo is used, or this test proves nothing
    for resource, expected, first, second in zip(corpus, walked, filling, replayed, strict=True):
        assert first == expected, resource.get("id")
        assert second == expected, resource.get("id")


def _observation(contained: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "contained": [{"resourceType": contained, "id": "who"}],
        "subject": {"reference": "#who"},
    }


def test_content_whose_findings_depend_on_its_context_is_not_replayed() -> None:
    """``{"reference": "#who"}`` at ``Observation.subject`` is wrong when ``#who`` is a Practitioner and
    right when it is a Patient: the same content at the same place, so only its context tells."""
    validator._MEMO.clear()
    for _ in range(2):
        wrong = [i["expression"] for i in validate(_observation("Practitioner")) if i["severity"] == "error"]
        assert wrong == [["Observation.subject.reference"]]
        assert [i for i in validate(_observation("Patient")) if i["severity"] == "error"] == []


def test_content_with_many_findings_is_not_kept() -> None:
    """A client cannot fill the memo with long lists of findings: its memory stays bounded."""
    validator._MEMO.clear()
    patient = {"resourceType": "Patient", "maritalStatus": {f"x{i}": 1 for i in range(20)}}
    first, second = validate(patient), validate(patient)
    assert first == second
    assert len([i for i in first if i["severity"] == "error"]) == 20
    assert not any(b'"x0"' in key[3] for key in validator._MEMO)
    assert all(len(found) <= validator._MEMO_MAX_FINDINGS for found in validator._MEMO.values())
    # a few findings are kept (and replayed as they were)
    patient["maritalStatus"] = {"x0": 1}
    assert validate(patient) == validate(patient)
    assert any(b'"x0"' in key[3] for key in validator._MEMO)
