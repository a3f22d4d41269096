"""`termtem load` and `termtem import` stop at the first 401/403, with a hint about --token."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from fhir_server.api.app import create_app
from fhir_server.api.protocol import uvicorn_options
from fhir_server.cli import app as cli
from fhir_server.config import Settings
from tests.conftest import free_port
from tests.mapping.golden import MAPPINGS

runner = CliRunner()


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[str, str]]:
    store = f"sqlite:///{tmp_path / 'server.sqlite'}"
    settings = Settings(store_url=store, auth=True, data_dir=tmp_path / "data")
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        **uvicorn_options(settings.max_header_bytes),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{config.port}", store
    server.should_exit = True
    thread.join(timeout=20)


def _posts(origin: str, status: str) -> float:
    """FHIR base POSTs (bundles) the server answered with ``status``, from its own metrics."""
    text = httpx.get(f"{origin}/metrics", timeout=30).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "termtem_http_requests_total"
                and labels.get("status") == status
                and labels.get("interaction") in ("transaction", "batch")
            ):
                total += sample.value
    return total


def _bundles(folder: Path, count: int) -> list[str]:
    folder.mkdir()
    paths = []
    for i in range(count):
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {"resourceType": "Patient", "id": f"p{i}", "gender": "female"},
                    "request": {"method": "PUT", "url": f"Patient/p{i}"},
                }
            ],
        }
        path = folder / f"b{i:02d}.json"
        path.write_bytes(orjson.dumps(bundle))
        paths.append(str(path))
    return paths


async def test_load_without_a_token_stops_at_the_first_401(secured: tuple[str, str], tmp_path: Path) -> None:
    origin, _ = secured
    files = _bundles(tmp_path / "bundles", 12)
    result = await asyncio.to_thread(
        runner.invoke, cli, ["load", *files, "--server", f"{origin}/fhir", "--workers", "2"], env={}
    )
    assert result.exit_code == 1
    assert "401" in result.output and "--token" in result.output and "TERMTEM_TOKEN" in result.output
    assert 1 <= _posts(origin, "401") <= 2  # one per worker at most, not twelve


async def test_import_with_a_read_only_token_stops_at_the_first_403(
    secured: tuple[str, str], tmp_path: Path
) -> None:
    origin, store = secured
    added = await asyncio.to_thread(
        runner.invoke,
        cli,
        ["client", "add", "study", "--org", "Organization/uni", "--role", "researcher",
         "--generate-key", str(tmp_path), "--store", store],
    )
    assert added.exit_code == 0, added.output
    minted = await asyncio.to_thread(
        runner.invoke,
        cli,
        ["token", "study", "--key", str(tmp_path / "study.jwk.json"), "--server", f"{origin}/fhir",
         "--store", store],
    )
    assert minted.exit_code == 0, minted.output
    sample = str(MAPPINGS / "moph43" / "samples" / "export-utf8")
    result = await asyncio.to_thread(
        runner.invoke,
        cli,
        ["import", "--format", "moph43", sample, "--server", f"{origin}/fhir", "--batch-size", "1",
         "--token", minted.output.strip()],
    )
    assert result.exit_code == 1
    assert "403" in result.output and "--token" in result.output
    assert _posts(origin, "403") == 1
