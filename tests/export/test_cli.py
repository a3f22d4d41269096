"""``termtem export`` against a running server (uvicorn, real HTTP) and straight from a store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
from typer.testing import CliRunner

from fhir_server.cli import app as cli
from fhir_server.interactions import writes
from fhir_server.storage.sqlite.store import SqliteStore

runner = CliRunner()


def _lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_export_from_a_running_server(live_server: str, tmp_path: Path) -> None:
    for n in range(3):
        child = httpx.put(
            f"{live_server}/Patient/c{n}",
            json={"resourceType": "Patient", "id": f"c{n}", "gender": "male", "birthDate": "2020-02-02"},
            timeout=60,
        )
        assert child.status_code == 201, child.text
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "w"},
            "subject": {"reference": f"Patient/c{n}"},
        }
        assert httpx.post(f"{live_server}/Observation", json=obs, timeout=60).status_code == 201
    out = tmp_path / "out"
    result = runner.invoke(cli, ["export", str(out), "--server", live_server, "--patients"])
    assert result.exit_code == 0, result.output
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert {e["type"]: e["count"] for e in manifest["output"]} == {"Patient": 3, "Observation": 3}
    assert sorted(p["id"] for p in _lines(out / "Patient-1.ndjson")) == ["c0", "c1", "c2"]
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in out.iterdir())  # downloads are private
    assert "6 resources in 2 files" in result.output
    # the status URL was deleted after the download: the server has let the files go
    assert httpx.get(manifest["output"][0]["url"], timeout=60).status_code == 404
    bad = runner.invoke(cli, ["export", str(tmp_path / "bad"), "--server", live_server, "--type", "Nope"])
    assert bad.exit_code == 1 and "Nope" in bad.output


def test_export_straight_from_a_store_deidentified(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"

    async def fill() -> None:
        store = SqliteStore(url)
        await store.open()
        async with store.transaction() as tx:
            for n in range(6):
                patient = {
                    "resourceType": "Patient",
                    "id": f"p{n}",
                    "gender": "female",
                    "birthDate": "2019-05-15",
                    "name": [{"family": f"Family{n}"}],
                }
                await writes.write_version(tx, "Patient", f"p{n}", patient, None, current=None, method="PUT")
        await store.close()

    asyncio.run(fill())
    out = tmp_path / "deid"
    result = runner.invoke(
        cli, ["export", str(out), "--store", url, "--patients", "--deidentify", "--project", "growth-study"]
    )
    assert result.exit_code == 0, result.output
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    patients = _lines(out / manifest["output"][0]["url"])
    assert (
        len(patients)
        + manifest["extension"]["https://termtem.org/fhir/export/deidentification"]["suppressedChildren"]
        == 6
    )
    text = (out / "Patient-1.ndjson").read_text() if (out / "Patient-1.ndjson").exists() else ""
    assert out.stat().st_mode & 0o777 == 0o700  # a new folder, private like its files
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in out.iterdir())
    assert "Family" not in text and "p0" not in text
    # nothing of the job's own bookkeeping (the child index holds the real ids) is left beside the files
    assert sorted(f.name for f in out.iterdir() if f.name.startswith(".")) == []
    assert "de-identified (k=5" in result.output
    again = runner.invoke(
        cli,
        [
            "export",
            str(tmp_path / "again"),
            "--store",
            url,
            "--patients",
            "--deidentify",
            "--project",
            "growth-study",
        ],
    )
    assert again.exit_code == 0
    assert (tmp_path / "again" / "Patient-1.ndjson").read_bytes() == (out / "Patient-1.ndjson").read_bytes()
