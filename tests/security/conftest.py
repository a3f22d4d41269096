"""Fixtures for the security tests: an auth-on app, registered agency clients and their tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server import canonical
from fhir_server.api.app import create_app
from fhir_server.cli.clients import client_assertion
from fhir_server.security import keys
from fhir_server.security.clients import ClientRecord, ClientRegistry
from fhir_server.security.tokens import ASSERTION_TYPE
from tests.conftest import make_settings

ORIGIN = "http://testserver"
BASE = f"{ORIGIN}/fhir"
TOKEN_URL = f"{ORIGIN}/auth/token"
AGENCY_SYSTEM = canonical.code_system(canonical.CS_AGENCY_TYPE)
FHIR_JSON = {"Content-Type": "application/fhir+json"}


class Caller:
    """One registered client with a token, speaking to the app. Like a real backend-services client it
    asks for a new token when the server says its token has expired (long tests on a loaded machine)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        name: str,
        key_file: Path,
        token: str,
        renew: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.http, self.name, self.key_file, self.token = http, name, key_file, token
        self._renew = renew

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    async def _send(self, method: str, url: str, extra: dict[str, str], **kwargs: Any) -> httpx.Response:
        reply = await self.http.request(method, url, headers=self.headers(extra), **kwargs)
        if self._renew is not None and reply.status_code == 401 and "expired" in reply.text:
            self.token = await self._renew()
            reply = await self.http.request(method, url, headers=self.headers(extra), **kwargs)
        return reply

    async def get(self, url: str, **headers: str) -> httpx.Response:
        return await self._send("GET", url, _h(headers))

    async def post(self, url: str, body: Any, **headers: str) -> httpx.Response:
        return await self._send("POST", url, {**FHIR_JSON, **_h(headers)}, json=body)

    async def put(self, url: str, body: Any, **headers: str) -> httpx.Response:
        return await self._send("PUT", url, {**FHIR_JSON, **_h(headers)}, json=body)

    async def delete(self, url: str) -> httpx.Response:
        return await self._send("DELETE", url, {})

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = await self.post(body["resourceType"], body)
        assert reply.status_code == 201, reply.text
        return reply.json()


def _h(headers: dict[str, str]) -> dict[str, str]:
    return {k.replace("_", "-"): v for k, v in headers.items()}


class World:
    def __init__(self, app: Any, http: httpx.AsyncClient, tmp: Path) -> None:
        self.app, self.http, self.tmp = app, http, tmp

    @property
    def store(self) -> Any:
        return self.app.state.store

    async def register(
        self, name: str, org: str, role: str, scopes: str | None = None, kty: str = "EC"
    ) -> Path:
        from fhir_server.security import roles

        private = keys.generate_private_jwk(kty, "ES384" if kty == "EC" else "RS384")
        key_file = self.tmp / f"{name}.jwk.json"
        keys.save_private_jwk(key_file, private)
        record = ClientRecord(
            id=name,
            name=name,
            organization=org,
            role=role,
            scopes=scopes or roles.get_role(role).default_scopes,
            jwks={"keys": [keys.public_jwk(private)]},
        )
        await ClientRegistry(self.store).add(record)
        return key_file

    async def token_reply(
        self, name: str, key_file: Path, scope: str, assertion: str | None = None
    ) -> httpx.Response:
        return await self.http.post(
            TOKEN_URL,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion or client_assertion(name, key_file, TOKEN_URL),
                "scope": scope,
            },
        )

    async def caller(
        self, name: str, org: str, role: str, scopes: str | None = None, kty: str = "EC"
    ) -> Caller:
        from fhir_server.security import roles

        key_file = await self.register(name, org, role, scopes, kty)
        scope = scopes or roles.get_role(role).default_scopes

        async def renew() -> str:
            reply = await self.token_reply(name, key_file, scope)
            assert reply.status_code == 200, reply.text
            return str(reply.json()["access_token"])

        return Caller(self.http, name, key_file, await renew(), renew)

    async def set_agency(self, org: str, agency_type: str | None, *identifiers: str) -> None:
        """What an administrator registers about an agency (``termtem agency set``)."""
        from fhir_server.security.agencies import AgencyRecord, AgencyRegistry

        await AgencyRegistry(self.store).set(AgencyRecord(org, agency_type, identifiers))

    async def audit_events(self) -> list[dict[str, Any]]:
        import orjson

        return [orjson.loads(s.body) async for s in self.store.iterate("AuditEvent")]


def agency(id_: str, agency_type: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": id_,
        "name": id_,
        "type": [{"coding": [{"system": AGENCY_SYSTEM, "code": agency_type}]}],
    }


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = make_settings(tmp_path, auth=True, data_dir=tmp_path / "data")  # TERMTEM_TEST_STORE
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            yield World(app, http, tmp_path)
