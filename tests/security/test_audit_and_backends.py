"""Audit details (the query, POST _search) and the fail-closed rule for backends without the access seam."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx

from fhir_server.api.app import create_app
from fhir_server.config import Settings
from fhir_server.storage.sqlite.store import SqliteStore
from tests.security import scene
from tests.security.conftest import BASE, World, agency


async def test_search_audit_names_query_and_children(world: World) -> None:
    s = await scene.build(world)
    reply = await s.school.http.post(
        "Observation/_search",
        content=b"subject=Patient/child1",
        headers=s.school.headers({"Content-Type": "application/x-www-form-urlencoded"}),
    )
    assert reply.status_code == 200 and reply.json()["total"] == 2
    events = [
        e
        for e in await world.audit_events()
        if e["subtype"][0]["code"] == "search-type"
        and e["agent"][0]["who"].get("identifier", {}).get("value") == "school"
    ]
    event = events[-1]
    query = next(ent for ent in event["entity"] if "query" in ent)
    assert base64.b64decode(query["query"]).decode() == "subject=Patient/child1"
    named = {ent["what"]["reference"] for ent in event["entity"] if "what" in ent}
    assert "Patient/child1" in named and "Patient/child2" not in named
    assert event["action"] == "E" and event["outcome"] == "0"
    assert event["agent"][0]["network"]["address"]


class _UnregisteredBackend:
    """A store from a module the guard does not know to compile ``SearchQuery.access``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.url = inner.url

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_backend_without_access_seam_fails_closed(tmp_path: Path) -> None:
    inner = SqliteStore(f"sqlite:///{tmp_path / 'plain.sqlite'}")
    await inner.open()
    settings = Settings(store_url=inner.url, auth=True, data_dir=tmp_path / "data")
    app = create_app(settings, store=_UnregisteredBackend(inner))  # type: ignore[arg-type]
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
                world = World(app, http, tmp_path)
                admin = await world.caller("admin", "Organization/ops", "admin")
                created = await admin.put("Organization/school1", agency("school1", "school"))
                assert created.status_code == 201
                assert (await admin.get("Organization")).status_code == 200  # admin: nothing to enforce
                school = await world.caller("school", "Organization/school1", "school")
                reply = await school.get("Observation")
                assert reply.status_code == 501
                assert "not available" in reply.json()["issue"][0]["diagnostics"]
    finally:
        await inner.close()


async def test_mongo_backend_enforces_consent_in_the_query(tmp_path: Path) -> None:
    settings = Settings(store_url="mongomock://security-mongo/db", auth=True, data_dir=tmp_path / "data")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            s = await scene.build(World(app, http, tmp_path))
            reply = await s.school.get("Observation?subject=Patient/child1&_total=accurate")
            assert reply.status_code == 200 and reply.json()["total"] == 2
