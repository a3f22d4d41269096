"""An export interrupted by a crash resumes from its checkpoint in the next server, with exact counts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fhir_server import jobs
from fhir_server.interactions import writes
from fhir_server.jobs.runner import JobHandle
from fhir_server.security.guard import agency_writer
from tests.export.conftest import download, kick_off, open_world, wait_manifest
from tests.security.conftest import Caller, World

N = 240


async def _data(world: World) -> None:
    writer = agency_writer(world.store, "Organization/hosp")
    async with writer.transaction() as tx:
        for n in range(N):
            body = {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": f"weight {n}"},
                "subject": {"reference": f"Patient/p{n % 7}"},
                "valueQuantity": {"value": n},
            }
            await writes.write_version(tx, "Observation", f"o{n:04d}", body, None, current=None, method="PUT")


async def _hospital(world: World) -> Caller:
    key = world.tmp / "hospital.jwk.json"
    if not key.exists():
        return await world.caller("hospital", "Organization/hosp", "hospital")
    reply = await world.token_reply("hospital", key, "system/*.cruds")  # the same client after the restart
    assert reply.status_code == 200, reply.text
    return Caller(world.http, "hospital", key, reply.json()["access_token"])


async def test_a_crash_mid_export_resumes_from_the_checkpoint(tmp_path: Path, monkeypatch: Any) -> None:
    from tests.export.conftest import export_settings

    # one store for both servers (a fresh mongomock store per settings would be another database)
    store_url = export_settings(tmp_path).store_url
    settings = {"export_page_bytes": 3000, "job_lease_seconds": 1.0, "store_url": store_url}
    status_url = ""
    afters: list[int] = []

    async def crash_release(self: JobHandle, state: str) -> None:
        return None  # a crash: the job is not given back, its lease just runs out

    async for world in open_world(tmp_path, **settings):
        await _data(world)
        hospital = await _hospital(world)
        store = world.store
        store_class = type(getattr(store, "backend", store))  # the backend under the timing wrapper
        scan = store.scan

        async def slow_scan(query: Any, after: int = 0, scan: Any = scan, **kw: Any) -> Any:
            await asyncio.sleep(0.15)  # past the first checkpoint (every second) before the end
            return await scan(query, after, **kw)

        store.scan = slow_scan
        status_url = await kick_off(hospital, "$export?_type=Observation")
        job_id = status_url.rsplit("/", 1)[1]
        for _ in range(500):
            job = await jobs.get(store, job_id)
            if job is not None and job.checkpoint and job.checkpoint.get("files", {}).get("Observation"):
                break
            await asyncio.sleep(0.05)
        saved = job.checkpoint if job else None
        assert saved and saved["after"] > 0 and job is not None and job.state == "running"
        monkeypatch.setattr(JobHandle, "release", crash_release)
    # the file holds lines written after the checkpoint: the restart must drop them, not count them twice
    folder = Path(tmp_path / "data" / "exports" / job_id)
    with (folder / "Observation-1.ndjson").open("ab") as half_written:
        half_written.write(b'{"resourceType":"Observation","id":"half-')
    monkeypatch.undo()
    # watched from before the next server starts: it resumes the job as soon as it is up
    original_scan = store_class.scan

    async def watching_scan(self: Any, query: Any, after: int = 0, **kw: Any) -> Any:
        afters.append(after)
        return await original_scan(self, query, after, **kw)

    monkeypatch.setattr(store_class, "scan", watching_scan)
    async for world in open_world(tmp_path, **settings):
        store = world.store
        hospital = await _hospital(world)
        manifest = await wait_manifest(hospital, status_url)
        files = await download(hospital, manifest)
        ids = [o["id"] for o in files["Observation"]]
        assert len(ids) == N and len(set(ids)) == N  # every resource once: none lost, none twice
        assert sum(e["count"] for e in manifest["output"]) == N
        job = await jobs.get(store, job_id)
        assert job is not None and job.state == "completed" and job.attempts == 2
        assert folder.exists()
    # the resumed run started where the checkpoint was, not from zero
    assert afters and afters[0] >= saved["after"] > 0
