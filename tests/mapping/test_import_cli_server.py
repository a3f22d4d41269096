"""`termtem import` into a running server over HTTP, twice: the second run changes nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
from typer.testing import CliRunner

from fhir_server.cli import app
from tests.mapping.golden import MAPPINGS

runner = CliRunner()
SAMPLES = [
    ("moph43", "moph43/samples/export-utf8"),
    ("bma-childcare-dspm", "bma-childcare-dspm/samples/dspm-2567.xlsx"),
    ("bma-school-health", "bma-school-health/samples/roster-2567.csv"),
    ("msdhs-case", "msdhs-case/samples/cases-2567-05.ndjson"),
]


def totals(base: str) -> dict[str, int]:
    out = {}
    for resource_type in ("Patient", "RelatedPerson", "Observation", "Task", "Consent"):
        out[resource_type] = httpx.get(
            f"{base}/{resource_type}", params={"_total": "accurate", "_count": "0"}
        ).json()["total"]
    return out


def test_every_format_imports_into_a_running_server(live_server: str, tmp_path: Path) -> None:
    for attempt in range(2):
        for format_name, sample in SAMPLES:
            errors = tmp_path / f"errors-{attempt}-{format_name}.json"
            result = runner.invoke(
                app,
                [
                    "import",
                    "--format",
                    format_name,
                    str(MAPPINGS / sample),
                    "--server",
                    live_server,
                    "--errors",
                    str(errors),
                ],
            )
            assert result.exit_code == 0, result.output
        if attempt == 0:
            first = totals(live_server)
            assert first["Patient"] >= 8 and first["Observation"] > 0 and first["Consent"] == 1
    assert totals(live_server) == first
