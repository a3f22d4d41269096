"""`termtem load`: bundles and NDJSON into a store or a running server, with a summary."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
from typer.testing import CliRunner

from fhir_server.cli import app
from fhir_server.storage.sqlite.store import SqliteStore
from tests.conftest import SHARED

SYNTHEA = SHARED / "testdata" / "synthea" / "R4"
runner = CliRunner()


def count(store_url: str, resource_type: str) -> int:
    """Resources the load wrote (golden records the identity layer adds are the server's own)."""

    async def run() -> int:
        store = SqliteStore(store_url)
        await store.open()
        try:
            return len([r async for r in store.iterate(resource_type) if b"/tag/identity" not in r.body])
        finally:
            await store.close()

    return asyncio.run(run())


def pick(folder: Path, names: list[str]) -> list[str]:
    return [str(next(SYNTHEA.glob(f"{name}*.json"))) for name in names]


def test_load_deduplicates_synthea_organizations_and_is_idempotent(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'load.sqlite'}"
    files = pick(SYNTHEA, ["hospitalInformation", "practitionerInformation", "Alda_Carter", "Jake_Fay"])
    result = runner.invoke(app, ["load", *files, "--store", store])
    assert result.exit_code == 0, result.output
    assert "created" in result.output
    organizations = {
        i["value"]
        for f in files
        for e in orjson.loads(Path(f).read_bytes())["entry"]
        if e["resource"]["resourceType"] == "Organization"
        for i in e["resource"]["identifier"]
    }
    assert count(store, "Organization") == len(organizations)
    practitioners = count(store, "Practitioner")
    again = runner.invoke(app, ["load", *files[:2], "--store", store])
    assert again.exit_code == 0, again.output
    assert count(store, "Organization") == len(organizations)
    assert count(store, "Practitioner") == practitioners


def test_load_ndjson_and_report_failures(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'load.sqlite'}"
    good = tmp_path / "data" / "Patient.ndjson"
    good.parent.mkdir()
    good.write_bytes(b"\n".join(orjson.dumps({"resourceType": "Patient", "id": f"p{n}"}) for n in range(700)))
    bad = tmp_path / "data" / "zz-bad.json"
    bad.write_bytes(
        orjson.dumps(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {"resourceType": "Patient"},
                        "request": {"method": "POST", "url": "Patient"},
                    },
                    {
                        "resource": {"resourceType": "Patient", "gender": "robot"},
                        "request": {"method": "POST", "url": "Patient"},
                    },
                ],
            }
        )
    )
    result = runner.invoke(app, ["load", str(tmp_path / "data"), "--store", store])
    assert result.exit_code == 1
    assert "zz-bad.json entry 1" in result.output
    assert count(store, "Patient") == 700


def test_load_into_a_running_server(live_server: str, tmp_path: Path) -> None:
    files = pick(SYNTHEA, ["Alda_Carter"])
    result = runner.invoke(app, ["load", *files, "--server", live_server, "--workers", "2"])
    assert result.exit_code == 0, result.output
    patients = httpx.get(f"{live_server}/Patient?_total=accurate").json()
    assert patients["total"] == 1
