"""In-process loads with ``--agency``: the data is that agency's over HTTP with auth on, and no one else's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from fhir_server.cli import app as cli
from fhir_server.config import Settings
from fhir_server.security.access import OWNER_TAG_SYSTEM
from tests.conftest import running_app
from tests.security.conftest import World

runner = CliRunner()
HOSPITAL_TAG = {"system": OWNER_TAG_SYSTEM, "code": "Organization/hosp"}


def _bundle(child: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "id": child, "gender": "female"},
                "request": {"method": "PUT", "url": f"Patient/{child}"},
            },
            {
                "fullUrl": "urn:uuid:6f1c1e0a-2b7e-4d55-9f00-4c1d0b7d8e01",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "weight"},
                    "subject": {"reference": f"Patient/{child}"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


def _file(tmp_path: Path, child: str) -> str:
    path = tmp_path / f"{child}.json"
    path.write_bytes(orjson.dumps(_bundle(child)))
    return str(path)


async def _load(*args: str) -> Any:
    """``termtem load`` (it runs its own event loop, so off this test's loop)."""
    return await asyncio.to_thread(runner.invoke, cli, ["load", *args])


@asynccontextmanager
async def _secured(store: str, tmp_path: Path) -> AsyncIterator[World]:
    settings = Settings(store_url=store, auth=True, data_dir=tmp_path / "data")
    async with running_app(settings) as (app, http):
        yield World(app, http, tmp_path)


async def test_load_with_agency_is_that_agencys_data(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'load.sqlite'}"
    loaded = await _load(_file(tmp_path, "kid"), "--store", store, "--agency", "Organization/hosp")
    assert loaded.exit_code == 0, loaded.output
    untagged = await _load(_file(tmp_path, "legacy"), "--store", store)
    assert untagged.exit_code == 0, untagged.output
    async with _secured(store, tmp_path) as world:
        hospital = await world.caller("hospital", "Organization/hosp", "hospital")
        school = await world.caller("school", "Organization/school2", "school")
        admin = await world.caller("admin", "Organization/ops", "admin")
        patient = await hospital.get("Patient/kid")
        assert patient.status_code == 200, patient.text
        assert patient.json()["meta"]["tag"] == [HOSPITAL_TAG]
        observations = (await hospital.get("Observation?subject=Patient/kid")).json()
        assert len(observations["entry"]) == 1
        assert observations["entry"][0]["resource"]["meta"]["tag"] == [HOSPITAL_TAG]
        # The tag is in the index too: the query-level owner check finds it.
        tagged = (await admin.get(f"Patient?_tag={OWNER_TAG_SYSTEM}|Organization/hosp")).json()
        assert [e["resource"]["id"] for e in tagged["entry"]] == ["kid"]
        # Another agency, without consent, sees none of it; nor does anyone but admin see untagged data.
        assert (await school.get("Patient/kid")).status_code == 404
        assert "entry" not in (await school.get("Observation")).json()
        assert (await hospital.get("Patient/legacy")).status_code == 404
        assert (await admin.get("Patient/legacy")).status_code == 200


async def test_load_for_another_agency_cannot_take_over_its_data(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'load.sqlite'}"
    path = _file(tmp_path, "kid")
    assert (await _load(path, "--store", store, "--agency", "Organization/hosp")).exit_code == 0
    again = await _load(path, "--store", store, "--agency", "Organization/school2")
    assert again.exit_code == 1
    assert "another agency" in again.output
    async with _secured(store, tmp_path) as world:
        hospital = await world.caller("hospital", "Organization/hosp", "hospital")
        patient = (await hospital.get("Patient/kid")).json()
        assert patient["meta"]["versionId"] == "1" and patient["meta"]["tag"] == [HOSPITAL_TAG]
        # Reloading as the owning agency is accepted.
        assert (await _load(path, "--store", store, "--agency", "Organization/hosp")).exit_code == 0


def test_agency_option_is_checked(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'load.sqlite'}"
    path = _file(tmp_path, "kid")
    bad = runner.invoke(cli, ["load", path, "--store", store, "--agency", "hosp"])
    assert bad.exit_code == 2 and "Organization/ID" in bad.output
    server = "http://127.0.0.1:9/fhir"
    both = runner.invoke(cli, ["load", path, "--server", server, "--agency", "Organization/h"])
    assert both.exit_code == 2 and "--agency" in both.output
    assert not (tmp_path / "load.sqlite").exists()
