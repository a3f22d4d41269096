"""The workflow tests run against the auth-on app of the security tests (agencies with tokens)."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from fhir_server.api.app import create_app
from tests.conftest import make_settings
from tests.security.conftest import (
    BASE,
    World,
    world,  # noqa: F401  (the fixture, re-exported)
)
from tests.workflow.receiver import Receiver


@pytest.fixture
async def notify_world(tmp_path: Path) -> AsyncIterator[World]:
    """The auth-on app with loopback endpoints allowed (the test's receivers listen on 127.0.0.1)."""
    settings = make_settings(
        tmp_path, auth=True, data_dir=tmp_path / "data", subscription_loopback=True, public_base_url=BASE
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            yield World(app, http, tmp_path)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


@pytest.fixture
async def live_world(tmp_path: Path) -> AsyncIterator[World]:
    """The auth-on app with its background delivery job on, as ``termtem serve`` runs it (loopback
    endpoints allowed: the tests' receivers listen on 127.0.0.1)."""
    settings = make_settings(
        tmp_path,
        auth=True,
        data_dir=tmp_path / "data",
        subscription_loopback=True,
        subscription_delivery=True,
        public_base_url=BASE,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            yield World(app, http, tmp_path)
