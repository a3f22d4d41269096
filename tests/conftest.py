"""Shared fixtures: a fresh embedded store and an HTTP client over the real ASGI app."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.api.app import create_app
from fhir_server.config import Settings
from fhir_server.storage.sqlite.store import SqliteStore
from tests.live import free_port as free_port  # where many tests import it from
from tests.live import serve

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
BASE = "http://testserver/fhir"


def _test_store_url(tmp_path: Path) -> str:
    """The store the HTTP suites run on: TERMTEM_TEST_STORE=sqlite (default), mongomock or mongodb."""
    backend = os.environ.get("TERMTEM_TEST_STORE", "sqlite")
    if backend == "mongomock":
        return f"mongomock://test-{uuid.uuid4().hex}/termtem"
    if backend == "mongodb":  # a fresh database per test on the server named by TERMTEM_TEST_MONGODB_URL
        from urllib.parse import urlsplit, urlunsplit

        url = urlsplit(os.environ["TERMTEM_TEST_MONGODB_URL"])
        return urlunsplit(url._replace(path=f"/termtem_test_{uuid.uuid4().hex[:12]}"))
    return f"sqlite:///{tmp_path / 'test.sqlite'}"


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    settings = Settings(store_url=_test_store_url(tmp_path), auth=False)
    settings.subscription_delivery = False  # tests that deliver run the job themselves (or ask for it)
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
    async with running_app(make_settings(tmp_path)) as (_, http):
        yield http


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app started with ``settings`` and a client for it; stopped (store closed) on exit."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE) as http,
    ):
        yield app, http


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    """`termtem serve` under uvicorn on a free loopback port, on a fresh store; yields the FHIR base."""
    with serve(tmp_path / "server.sqlite") as server:
        yield server.base
