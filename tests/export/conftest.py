"""Fixtures for the bulk export tests: an auth-on app with a fast job runner, and export helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_server.api.app import create_app
from tests.conftest import make_settings
from tests.security.conftest import BASE, Caller, World

ASYNC = {"Prefer": "respond-async"}


def export_settings(tmp_path: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "auth": True,
        "data_dir": tmp_path / "data",
        "job_poll_seconds": 0.05,
        "export_retry_after": 1,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


async def open_world(tmp_path: Path, **overrides: Any) -> AsyncIterator[World]:
    app = create_app(export_settings(tmp_path, **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=60) as http:
            yield World(app, http, tmp_path)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async for w in open_world(tmp_path):
        yield w


async def kick_off(caller: Caller, path: str = "$export", **headers: str) -> str:
    reply = await caller.get(path, **{"prefer": "respond-async", **headers})
    assert reply.status_code == 202, reply.text
    return reply.headers["content-location"]


async def wait_manifest(caller: Caller, status_url: str, timeout: float = 60) -> dict[str, Any]:
    """Poll as a well-behaved client does: wait Retry-After between polls."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        reply = await caller.get(status_url)
        if reply.status_code == 200:
            return reply.json()
        assert reply.status_code == 202, reply.text
        assert reply.headers.get("x-progress") is not None
        await asyncio.sleep(float(reply.headers["retry-after"]))
        assert asyncio.get_running_loop().time() < deadline, "export did not finish"


async def download(
    caller: Caller, manifest: dict[str, Any], part: str = "output"
) -> dict[str, list[dict[str, Any]]]:
    """Every file of the manifest, checked line count = count; resources by type."""
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest[part]:
        reply = await caller.http.get(entry["url"], headers={"Authorization": f"Bearer {caller.token}"})
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("application/fhir+ndjson")
        lines = reply.content.splitlines()
        assert len(lines) == entry["count"], entry
        found.setdefault(entry["type"], []).extend(orjson.loads(line) for line in lines)
    return found
