"""The ``termtem import`` command: dry runs, bundle output, error reports and exit status."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
from typer.testing import CliRunner

from fhir_server.cli import app
from tests.mapping.golden import MAPPINGS

_runner = CliRunner()


def test_dry_run_of_clean_files_exits_zero_and_writes_bundles(tmp_path: Path) -> None:
    out = tmp_path / "bundles.ndjson"
    result = _runner.invoke(app, ["import", "--format", "moph43", "--dry-run", "--out", str(out),
                                  str(MAPPINGS / "moph43/samples/export-utf8"),
                                  str(MAPPINGS / "moph43/samples/export-tis620.zip")])
    assert result.exit_code == 0, result.output
    bundles = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert sum(len(b["entry"]) for b in bundles) == 28
    assert all(b["type"] == "transaction" for b in bundles)


def test_rejected_rows_give_exit_status_one_and_a_csv_report(tmp_path: Path) -> None:
    report = tmp_path / "errors.csv"
    sheet = str(MAPPINGS / "bma-childcare-dspm/samples/dspm-mixed-errors.csv")
    result = _runner.invoke(app, ["import", "--format", "bma-childcare-dspm", "--dry-run",
                                  "--errors", str(report), sheet])
    assert result.exit_code == 1
    rows = list(csv.DictReader(report.open(encoding="utf-8-sig")))
    assert [(r["row"], r["field"]) for r in rows][:2] == [("3", "เลขประจำตัวประชาชน"), ("4", "วันเกิด")]
    assert all(r["file"].endswith("dspm-mixed-errors.csv") and r["reason"] for r in rows)


def test_json_error_report_and_small_batches(tmp_path: Path) -> None:
    report, out = tmp_path / "errors.json", tmp_path / "b.ndjson"
    result = _runner.invoke(app, ["import", "--format", "moph43", "--out", str(out), "--errors", str(report),
                                  "--batch-size", "2", str(MAPPINGS / "moph43/samples/export-with-errors")])
    assert result.exit_code == 1
    assert len(orjson.loads(report.read_bytes())) == 7
    bundles = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    # A record's entries stay together: the 3 observations of one NUTRITION row fill a bundle alone.
    assert [len(b["entry"]) for b in bundles] == [1, 3, 1]


def test_unknown_format_and_missing_destination_are_refused() -> None:
    sample = str(MAPPINGS / "moph43/samples/export-utf8")
    assert _runner.invoke(app, ["import", "--format", "nope", "--dry-run", sample]).exit_code == 2
    assert _runner.invoke(app, ["import", "--format", "moph43", sample]).exit_code == 2
