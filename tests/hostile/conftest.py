"""Fixtures for hostile-input tests: the app with auth off, and with auth on behind an agency's token."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from fhir_server.api.app import create_app
from tests.conftest import make_settings
from tests.security.conftest import BASE, World, agency

FHIR_JSON = "application/fhir+json"


class Api:
    """One way in: requests go to the FHIR base, with the agency's token when auth is on."""

    def __init__(self, http: httpx.AsyncClient, token: str | None, app: Any) -> None:
        self.http, self.token, self.app = http, token, app

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        out = {"Content-Type": FHIR_JSON, **(headers or {})}
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        return out

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await self.http.request(
            method, url, json=json, content=content, headers=self._headers(headers)
        )

    async def patient(self) -> str:
        """A new child written by this caller (agencies create with POST: the server picks the id)."""
        reply = await self.request("POST", "Patient", json={"resourceType": "Patient", "gender": "female"})
        assert reply.status_code == 201, reply.text
        return str(reply.json()["id"])


@pytest.fixture(scope="module", params=["auth-off", "auth-on"])
async def _app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    """One app per module and auth mode (starting one per test would cost most of the suite's time)."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    auth = request.param == "auth-on"
    settings = make_settings(
        tmp_path, auth=auth, data_dir=tmp_path / "data", token_lifetime_seconds=24 * 3600
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            token = None
            if auth:
                world = World(app, http, tmp_path)
                admin = await world.caller("admin", "Organization/ops", "admin")
                for oid, kind in (("ops", "district-office"), ("hosp", "hospital")):
                    reply = await admin.put(f"{BASE}/Organization/{oid}", agency(oid, kind))
                    assert reply.status_code in (200, 201), reply.text
                token = (await world.caller("hospital", "Organization/hosp", "hospital")).token
            yield Api(http, token, app)


@pytest.fixture
def api(_app: Api) -> Iterator[Api]:
    """The module's app; settings a test changes (limits) are put back afterwards."""
    settings = _app.app.state.settings
    saved = copy.copy(settings.__dict__)
    yield _app
    settings.__dict__.update(saved)
