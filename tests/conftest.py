"""Shared fixtures: a fresh embedded store and an HTTP client over the real ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fhir_server.api.app import create_app
from fhir_server.config import Settings
from fhir_server.storage.sqlite.store import SqliteStore

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
BASE = "http://testserver/fhir"


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    settings = Settings(store_url=f"sqlite:///{tmp_path / 'test.sqlite'}")
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client speaking to the app in-process (lifespan included) on a fresh store."""
    app = create_app(make_settings(tmp_path))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            yield http
