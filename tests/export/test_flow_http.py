"""The Bulk Data flow over HTTP with auth on, in the shapes real clients send (client-compat.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fhir_server import jobs
from tests.export.conftest import download, kick_off, wait_manifest
from tests.security import scene
from tests.security.conftest import Caller, World


async def _children(world: World, hospital: Caller, n: int) -> list[str]:
    ids = []
    for i in range(n):
        child = f"kid{i}"
        patient = {"resourceType": "Patient", "id": child, "gender": "male", "birthDate": "2021-02-03"}
        await scene.load_as(world, "Organization/hosp", patient)
        for _ in range(2):
            await hospital.create(scene.observation(child, None, "weight"))
        ids.append(child)
    return ids


async def test_get_kick_off_lenient_poll_download_and_exact_counts(world: World) -> None:
    s = await scene.build(world)  # child1, child2 with 3 Observations each, written by the hospital
    await _children(world, s.hospital, 3)
    # GET with the lenient header bulk clients send; an unknown parameter is then left out, not refused
    status_url = await kick_off(
        s.hospital,
        "Patient/$export?_type=Patient,Observation&_bogus=1",
        prefer="respond-async, handling=lenient",
    )
    assert status_url.startswith("http://testserver/fhir/_export/")
    first = await s.hospital.get(status_url)
    if first.status_code == 202:
        assert first.headers["retry-after"] == "1" and first.headers["x-progress"]
        again = await s.hospital.get(status_url)  # at once, ignoring Retry-After
        assert again.status_code == 429 and again.headers["retry-after"] == "1"
        assert again.json()["resourceType"] == "OperationOutcome"
        await asyncio.sleep(1)
    manifest = await wait_manifest(s.hospital, status_url)
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"].endswith("Patient/$export?_type=Patient,Observation&_bogus=1")
    assert manifest["transactionTime"].endswith("Z")
    counts = {e["type"]: e["count"] for e in manifest["output"]}
    assert counts == {"Patient": 5, "Observation": 12}
    files = await download(s.hospital, manifest)
    assert sorted(p["id"] for p in files["Patient"]) == ["child1", "child2", "kid0", "kid1", "kid2"]
    notes = await download(s.hospital, manifest, "error")
    assert "_bogus" in notes["OperationOutcome"][0]["issue"][0]["diagnostics"]
    # downloads carry no Accept header at all (the Bulk Data client's shape) and are not cached
    url = manifest["output"][0]["url"]
    bare = s.world.http.build_request("GET", url, headers={"Authorization": f"Bearer {s.hospital.token}"})
    del bare.headers["accept"]
    raw = await s.world.http.send(bare)
    assert "accept" not in raw.request.headers
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("application/fhir+ndjson")
    assert len(raw.content.splitlines()) == manifest["output"][0]["count"]
    assert raw.headers["cache-control"] == "no-store"
    # polling a finished export is never throttled
    assert (await s.hospital.get(status_url)).status_code == 200
    assert (await s.hospital.get(status_url)).status_code == 200


async def test_post_parameters_body_and_post_query_with_empty_body(world: World) -> None:
    s = await scene.build(world)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
            {"name": "_since", "valueInstant": "2000-01-01T00:00:00Z"},
            {"name": "_type", "valueString": "Patient"},
            {"name": "_type", "valueString": "Observation"},
            {"name": "patient", "valueReference": {"reference": "Patient/child1"}},
        ],
    }
    reply = await s.hospital.post("Patient/$export", body, prefer="respond-async")
    assert reply.status_code == 202, reply.text
    manifest = await wait_manifest(s.hospital, reply.headers["content-location"])
    assert {e["type"]: e["count"] for e in manifest["output"]} == {"Patient": 1, "Observation": 3}
    assert manifest["deleted"] == []  # a _since export lists deletions (none here)
    # parameters in the query string, empty body (fhir-kit-client's shape)
    reply = await s.world.http.post(
        "$export?_type=Observation&_outputFormat=ndjson",
        content=b"",
        headers=s.hospital.headers({"Prefer": "respond-async", "Accept": "application/fhir+json"}),
    )
    assert reply.status_code == 202, reply.text
    manifest = await wait_manifest(s.hospital, reply.headers["content-location"])
    assert [(e["type"], e["count"]) for e in manifest["output"]] == [("Observation", 6)]


async def test_delete_cancels_and_removes_files_and_only_the_owner_sees_a_job(world: World) -> None:
    s = await scene.build(world)
    status_url = await kick_off(s.hospital, "$export?_type=Observation")
    manifest = await wait_manifest(s.hospital, status_url)
    job_id = status_url.rsplit("/", 1)[1]
    folder = Path(world.app.state.settings.export_path()) / job_id
    assert any(folder.glob("*.ndjson"))
    # children's data: the folder and every file in it are this user's only
    assert folder.stat().st_mode & 0o777 == 0o700
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in folder.iterdir())
    file_url = manifest["output"][0]["url"]
    # another agency's client: the job and its files do not exist for it
    for url in (status_url, file_url):
        other = await s.school.get(url)
        assert other.status_code == 404 and other.json()["resourceType"] == "OperationOutcome"
    assert (await s.school.delete(status_url)).status_code == 404
    unknown = await s.hospital.get(status_url[:-4] + "0000")
    assert unknown.status_code == 404
    assert (await s.hospital.get(file_url.rsplit("/", 1)[0] + "/../../x")).status_code == 404
    # the owner deletes it: files go, the status URL is gone
    deleted = await s.hospital.delete(status_url)
    assert deleted.status_code == 202
    assert not folder.exists()
    assert (await s.hospital.get(status_url)).status_code == 404
    assert (await s.hospital.get(file_url)).status_code == 404


async def test_delete_of_a_running_export_cancels_it(world: World) -> None:
    s = await scene.build(world)
    store = world.store
    gate = asyncio.Event()
    original = store.scan

    async def slow_scan(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await original(*args, **kwargs)

    store.scan = slow_scan  # the export waits in its first page
    try:
        status_url = await kick_off(s.hospital, "$export?_type=Observation")
        job_id = status_url.rsplit("/", 1)[1]
        for _ in range(100):
            job = await jobs.get(store, job_id)
            if job is not None and job.state == "running":
                break
            await asyncio.sleep(0.02)
        assert (await s.hospital.delete(status_url)).status_code == 202
        gate.set()
        for _ in range(200):
            job = await jobs.get(store, job_id)
            if job is not None and job.state == "cancelled":
                break
            await asyncio.sleep(0.02)
        assert job is not None and job.state == "cancelled"
        assert not (Path(world.app.state.settings.export_path()) / job_id).exists()
        assert (await s.hospital.get(status_url)).status_code == 404
    finally:
        store.scan = original
        gate.set()


async def test_concurrent_exports_are_limited(tmp_path: Path) -> None:
    from tests.export.conftest import open_world

    async for world in open_world(tmp_path, export_max_running=1, job_workers=1):
        s = await scene.build(world)
        runner = world.app.state.jobs
        await runner.stop()  # nothing runs: the first export stays queued
        await kick_off(s.hospital, "$export?_type=Observation")
        busy = await s.hospital.get("$export", prefer="respond-async")
        assert busy.status_code == 429 and int(busy.headers["retry-after"]) > 0
        assert busy.json()["issue"][0]["code"] == "throttled"
        await runner.start()


async def test_audit_records_who_what_and_how_many(world: World) -> None:
    s = await scene.build(world)
    manifest = await wait_manifest(s.hospital, await kick_off(s.hospital, "Patient/$export"))
    assert manifest["output"]
    events = await world.audit_events()
    done = [e for e in events if "complete" in e.get("outcomeDesc", "") and "bulk export" in e["outcomeDesc"]]
    assert len(done) == 1
    event = done[0]
    assert "2 Patient" in event["outcomeDesc"] and "6 Observation" in event["outcomeDesc"]
    who = event["agent"][0]["who"]["identifier"]["value"]
    assert who == "hospital"
    children = {
        e["what"]["reference"]
        for ev in events
        if "data of these children was exported" in ev.get("outcomeDesc", "")
        for e in ev.get("entity", [])
        if "what" in e
    }
    assert {"Patient/child1", "Patient/child2"} <= children
    kick = [e for e in events if any("$export" in str(x.get("description", "")) for x in e.get("entity", []))]
    assert kick  # the kick-off request itself, with its query
    downloads_before = len(events)
    await download(s.hospital, manifest)
    assert len(await world.audit_events()) > downloads_before  # every download is audited too


async def test_capability_statement_advertises_the_export_operations(world: World) -> None:
    metadata = (await world.http.get("metadata")).json()
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in metadata["instantiates"]
    rest = metadata["rest"][0]
    bulk = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
    assert {"name": "export", "definition": bulk + "export"} in rest["operation"]
    by_type = {r["type"]: r.get("operation", []) for r in rest["resource"]}
    assert {"name": "export", "definition": bulk + "patient-export"} in by_type["Patient"]
    assert {"name": "export", "definition": bulk + "group-export"} in by_type["Group"]


async def test_finished_exports_expire_and_their_files_go(tmp_path: Path) -> None:
    from tests.export.conftest import open_world

    async for world in open_world(tmp_path, export_expire_seconds=3):
        s = await scene.build(world)
        status_url = await kick_off(s.hospital, "$export?_type=Observation")
        manifest = await wait_manifest(s.hospital, status_url)
        folder = Path(world.app.state.settings.export_path()) / status_url.rsplit("/", 1)[1]
        assert folder.exists()
        for _ in range(300):
            await asyncio.sleep(0.05)
            if not folder.exists() and (await s.hospital.get(status_url)).status_code == 404:
                break
        assert not folder.exists()
        assert (await s.hospital.get(status_url)).status_code == 404
        assert (await s.hospital.get(manifest["output"][0]["url"])).status_code == 404


async def test_polling_faster_than_retry_after_is_throttled(tmp_path: Path) -> None:
    from tests.export.conftest import open_world

    async for world in open_world(tmp_path, job_workers=1):
        s = await scene.build(world)
        runner = world.app.state.jobs
        await runner.stop()  # nothing runs: the export stays in progress while it is polled
        try:
            status_url = await kick_off(s.hospital, "$export?_type=Observation")
            first = await s.hospital.get(status_url)
            assert first.status_code == 202 and first.headers["x-progress"]
            retry = int(first.headers["retry-after"])
            again = await s.hospital.get(status_url)  # at once, ignoring Retry-After
            assert again.status_code == 429 and again.headers["retry-after"] == str(retry)
            assert again.json()["issue"][0]["code"] == "throttled"
            await asyncio.sleep(retry + 0.1)
            assert (await s.hospital.get(status_url)).status_code == 202  # a patient poller is answered
        finally:
            await runner.start()
        await asyncio.sleep(retry + 0.1)
        manifest = await wait_manifest(s.hospital, status_url)
        assert {e["type"]: e["count"] for e in manifest["output"]} == {"Observation": 6}
