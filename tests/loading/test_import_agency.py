"""``termtem import``: ``--agency`` tags in-process imports; ``--token`` authenticates server imports."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from fhir_server.api.app import create_app
from fhir_server.cli import app as cli
from fhir_server.config import Settings
from fhir_server.security.access import OWNER_TAG_SYSTEM
from tests.conftest import free_port, running_app
from tests.mapping.golden import MAPPINGS
from tests.security.conftest import World

runner = CliRunner()
SHEET = str(MAPPINGS / "bma-childcare-dspm/samples/dspm-2567-utf8-bom.csv")
CHILDCARE_TAG = {"system": OWNER_TAG_SYSTEM, "code": "Organization/cc"}


def _import(*args: str) -> object:
    return runner.invoke(cli, ["import", "--format", "bma-childcare-dspm", SHEET, *args])


async def test_import_with_agency_is_that_agencys_data(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'import.sqlite'}"
    result = await asyncio.to_thread(_import, "--store", store, "--agency", "Organization/cc")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    settings = Settings(store_url=store, auth=True, data_dir=tmp_path / "data")
    async with running_app(settings) as (app, http):
        world = World(app, http, tmp_path)
        centre = await world.caller("centre", "Organization/cc", "childcare")
        school = await world.caller("school", "Organization/school2", "school")
        for rtype, expected in (("Patient", 3), ("RelatedPerson", 2), ("Observation", 3)):
            bundle = (await centre.get(f"{rtype}?_total=accurate")).json()
            assert bundle["total"] == expected, rtype
            assert all(e["resource"]["meta"]["tag"] == [CHILDCARE_TAG] for e in bundle["entry"])
            assert (await school.get(f"{rtype}?_total=accurate")).json()["total"] == 0, rtype


def test_agency_needs_a_store_and_a_valid_reference(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'import.sqlite'}"
    bad = _import("--store", store, "--agency", "cc")
    assert bad.exit_code == 2 and "Organization/ID" in bad.output  # type: ignore[attr-defined]
    dry = _import("--dry-run", "--agency", "Organization/cc")
    assert dry.exit_code == 2 and "--agency" in dry.output  # type: ignore[attr-defined]
    assert not (tmp_path / "import.sqlite").exists()


@pytest.fixture
def secured_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real uvicorn server with auth on (the import's HTTP client is synchronous); yields base, store."""
    store = f"sqlite:///{tmp_path / 'server.sqlite'}"
    settings = Settings(store_url=store, auth=True, data_dir=tmp_path / "data")
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{server.config.port}/fhir", store
    server.should_exit = True
    thread.join(timeout=20)


def test_import_over_http_with_a_token(
    secured_server: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, store = secured_server
    added = runner.invoke(
        cli,
        ["client", "add", "centre", "--org", "Organization/cc", "--role", "childcare",
         "--generate-key", str(tmp_path), "--store", store],
    )
    assert added.exit_code == 0, added.output
    minted = runner.invoke(
        cli,
        ["token", "centre", "--key", str(tmp_path / "centre.jwk.json"), "--server", base, "--store", store],
    )
    assert minted.exit_code == 0, minted.output
    token = minted.output.strip()
    refused = _import("--server", base)
    assert refused.exit_code == 1 and "401" in refused.output  # type: ignore[attr-defined]
    accepted = _import("--server", base, "--token", token)
    assert accepted.exit_code == 0, accepted.output  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {token}"}
    patients = httpx.get(f"{base}/Patient", params={"_total": "accurate"}, headers=headers).json()
    assert patients["total"] == 3
    assert all(e["resource"]["meta"]["tag"] == [CHILDCARE_TAG] for e in patients["entry"])
    # The token can also come from the environment, as for `termtem load`.
    monkeypatch.setenv("TERMTEM_TOKEN", token)
    assert _import("--server", base).exit_code == 0  # type: ignore[attr-defined]
