"""``termtem generate`` through typer's runner: files, summary and refusals."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fhir_server.cli import app

runner = CliRunner()


def test_generate_ndjson_writes_one_file_per_type_and_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "pop"
    result = runner.invoke(app, ["generate", "--children", "25", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    patients = (out / "Patient.ndjson").read_text(encoding="utf-8").splitlines()
    children = [p for p in patients if '"code":"pid"' not in p]  # mothers carry their centre's PID
    assert len(children) == 25 and json.loads(patients[0])["resourceType"] == "Patient"
    assert len(patients) > 25  # a few mothers of the under-6s, with their birth records
    assert (out / "Organization.ndjson").exists() and (out / "Observation.ndjson").exists()
    assert "Patient" in result.output and "Total" in result.output
    assert "25 children" in result.output and "resources/s" in result.output


def test_generate_bundles_to_a_resource_target(tmp_path: Path) -> None:
    out = tmp_path / "tx"
    result = runner.invoke(
        app,
        [
            "generate",
            "--resources",
            "3000",
            "--format",
            "bundles",
            "--households-per-bundle",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("bundle-*.json"))
    total = sum(len(json.loads(p.read_bytes())["entry"]) for p in files)
    assert total >= 3000 and len(files) > 3
    assert f"{total:,}" in result.output


def test_generate_refuses_both_or_neither_size(tmp_path: Path) -> None:
    neither = runner.invoke(app, ["generate", "--out", str(tmp_path / "a")])
    both = runner.invoke(
        app, ["generate", "--children", "5", "--resources", "50", "--out", str(tmp_path / "b")]
    )
    bad_date = runner.invoke(
        app, ["generate", "--children", "5", "--reference-date", "soon", "--out", str(tmp_path / "c")]
    )
    for result in (neither, both, bad_date):
        assert result.exit_code == 2, result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
