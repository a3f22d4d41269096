"""``$reindex`` runs on the shared job runner of the server process, and survives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fhir_server import jobs
from fhir_server.search import registry
from tests.conftest import make_settings, running_app

URL = "https://termtem.org/fhir/SearchParameter/test-jobs-nickname"
SP = {
    "resourceType": "SearchParameter",
    "id": "test-jobs-nickname",
    "url": URL,
    "name": "jobnick",
    "description": "A child's nickname",
    "status": "active",
    "code": "jobnick",
    "base": ["Patient"],
    "type": "string",
    "expression": "Patient.name.where(use = 'nickname').given",
}


def _values(parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in parameters["parameter"]
    }


async def test_reindex_runs_in_the_background_and_finishes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, job_poll_seconds=0.05)
    try:
        async with running_app(settings) as (app, http):
            for i in range(30):
                body = {"resourceType": "Patient", "name": [{"use": "nickname", "given": [f"Joy{i}"]}]}
                assert (await http.post("Patient", json=body)).status_code == 201
            registry.unregister_custom(URL)
            # the parameter arrives by a direct store write, so existing data must be reindexed
            assert (await http.put(f"SearchParameter/{SP['id']}", json=SP)).status_code in (200, 201)
            pending = await http.get("Patient?jobnick=joy1", headers={"Prefer": "handling=strict"})
            assert pending.status_code == 400 and "reindex" in pending.text
            started = await http.post("$reindex", json={"resourceType": "Parameters"})
            assert started.status_code in (200, 202), started.text
            job_id = _values(started.json())["jobId"]
            for _ in range(200):
                reply = await http.post(f"$reindex?job={job_id}", content=b"")
                if _values(reply.json())["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
            done = _values(reply.json())
            assert done["status"] == "completed" and done["processed"] >= 30
            stored = await jobs.get(app.state.store, job_id)
            assert stored is not None and stored.kind == "reindex"
            found = await http.get("Patient?jobnick=joy1")
            assert found.status_code == 200
            assert found.json().get("total", len(found.json().get("entry", []))) >= 1
            assert (await http.post("$reindex?job=nope", content=b"")).status_code == 404
    finally:
        registry.unregister_custom(URL)
