"""A child registered by two agencies (linked by the identity layer to one golden record) is one
pseudonymous patient in a researcher's de-identified export, and counts once for k-anonymity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.export.conftest import download, kick_off, open_world, wait_manifest
from tests.identity.helpers import child
from tests.security import scene
from tests.security.conftest import World

KITTI = "1103700123458"  # one Thai citizen id: both agencies' records link to one golden record
MALEE = "1103700200011"
EXTENSION = "https://termtem.org/fhir/export/deidentification"
_RESEARCH = {"agency_types": ("research",), "purposes": ("HRESCH",), "classes": ("demographics", "growth")}


async def _register_kitti_twice(world: World) -> dict[str, Any]:
    """The childcare centre and the hospital each register Kitti (the same citizen id), each weighs him
    on the same day and each records his guardian's research consent for its own record."""
    await scene.build(world)
    childcare = await world.caller("cc-app", "Organization/cc", "childcare")
    hospital = await world.caller("hosp-app", "Organization/hosp", "hospital")
    ids: dict[str, Any] = {"records": {}, "weights": {}}
    for name, agency in (("cc", childcare), ("hosp", hospital)):
        record = (await agency.create(child(KITTI, birth="2021-03-15")))["id"]
        weight = {**scene.observation(record, scene.GROWTH, "weight"), "effectiveDateTime": "2024-05-02"}
        ids["records"][name] = record
        ids["weights"][name] = (await agency.create(weight))["id"]
        reply = await agency.post("Consent", scene.consent(record, **_RESEARCH))
        assert reply.status_code == 201, reply.text
    return ids


async def test_one_child_is_one_pseudonymous_patient_across_agencies(tmp_path: Path) -> None:
    async for world in open_world(tmp_path, export_k=1):
        await _register_kitti_twice(world)
        hospital = await world.caller("hosp-2", "Organization/hosp", "hospital")
        other = (await hospital.create(child(MALEE, given="มาลี", gender="female", birth="2020-01-10")))["id"]
        weight = {**scene.observation(other, scene.GROWTH, "weight"), "effectiveDateTime": "2024-05-02"}
        await hospital.create(weight)
        await hospital.post("Consent", scene.consent(other, **_RESEARCH))

        researcher = await world.caller("study", "Organization/research", "researcher")
        manifest = await wait_manifest(researcher, await kick_off(researcher, "Patient/$export"))
        files = await download(researcher, manifest)

        patients = files["Patient"]
        assert len(patients) == 2  # Kitti once (not once per agency), and Malee
        kitti = next(p for p in patients if p["gender"] == "male")
        malee = next(p for p in patients if p["gender"] == "female")
        weights = files["Observation"]
        assert len(weights) == 3  # both agencies' weights of Kitti, and Malee's
        subjects = [w["subject"]["reference"] for w in weights]
        assert sorted(subjects) == sorted([f"Patient/{kitti['id']}"] * 2 + [f"Patient/{malee['id']}"])
        # one child, one date offset: the two agencies' weights on one day stay on one (shifted) day
        kitti_days = {
            w["effectiveDateTime"] for w in weights if w["subject"]["reference"].endswith(kitti["id"])
        }
        assert len(kitti_days) == 1 and kitti_days != {"2024-05-02"}
        consents = files["Consent"]
        assert {c["patient"]["reference"] for c in consents} == {
            f"Patient/{kitti['id']}",
            f"Patient/{malee['id']}",
        }
        ext = manifest["extension"][EXTENSION]
        assert ext["mergedRecords"] == 1 and ext["suppressedChildren"] == 0

        # the same pseudonym in the next export of the project (a follow-up can be joined)
        again = await download(
            researcher,
            await wait_manifest(researcher, await kick_off(researcher, "Patient/$export?_type=Patient")),
        )
        assert {p["id"] for p in again["Patient"]} == {kitti["id"], malee["id"]}


async def test_k_anonymity_counts_a_child_once_whatever_the_agencies(tmp_path: Path) -> None:
    # Kitti's two records would make a cell of two; he is one child, alone in it: suppressed at k=2.
    async for world in open_world(tmp_path, export_k=2):
        await _register_kitti_twice(world)
        researcher = await world.caller("study", "Organization/research", "researcher")
        manifest = await wait_manifest(researcher, await kick_off(researcher, "Patient/$export"))
        ext = manifest["extension"][EXTENSION]
        assert manifest["output"] == []
        assert ext["suppressedChildren"] == 1
        # both agencies' weights and consents, and his one Patient (the other record is folded into it)
        assert ext["suppressedResources"] == 2 + 2 + 1 and ext["mergedRecords"] == 1


async def test_a_resumed_export_keeps_the_links_it_started_with(tmp_path: Path, monkeypatch: Any) -> None:
    """Which records are one child is decided when the export starts and stored with it: the server
    that resumes the export after a crash writes the same one pseudonymous patient."""
    import asyncio

    from fhir_server import jobs
    from fhir_server.jobs.runner import JobHandle
    from fhir_server.security import roles
    from tests.export.conftest import export_settings
    from tests.security.conftest import Caller

    settings = {"export_k": 1, "job_lease_seconds": 1.0, "store_url": export_settings(tmp_path).store_url}

    async def crash_release(self: JobHandle, state: str) -> None:
        return None  # a crash: the job is not given back, its lease just runs out

    async for world in open_world(tmp_path, **settings):
        await _register_kitti_twice(world)
        researcher = await world.caller("study", "Organization/research", "researcher")
        store = world.store
        scan = store.scan

        async def slow_scan(query: Any, after: int = 0, scan: Any = scan, **kw: Any) -> Any:
            await asyncio.sleep(0.3)  # the export is still running when this server stops
            return await scan(query, after, **kw)

        store.scan = slow_scan
        status_url = await kick_off(researcher, "Patient/$export")
        job_id = status_url.rsplit("/", 1)[1]
        for _ in range(400):
            job = await jobs.get(store, job_id)
            if job is not None and (job.checkpoint or {}).get("phase") == "export":
                break
            await asyncio.sleep(0.05)
        assert job is not None and job.state == "running" and job.checkpoint["phase"] == "export"
        monkeypatch.setattr(JobHandle, "release", crash_release)
    monkeypatch.undo()
    async for world in open_world(tmp_path, **settings):
        key = world.tmp / "study.jwk.json"
        reply = await world.token_reply("study", key, roles.get_role("researcher").default_scopes)
        researcher = Caller(world.http, "study", key, reply.json()["access_token"])
        manifest = await wait_manifest(researcher, status_url)
        files = await download(researcher, manifest)
        job = await jobs.get(world.store, job_id)
        assert job is not None and job.attempts == 2  # resumed, not started again
        assert len(files["Patient"]) == 1
        assert {w["subject"]["reference"] for w in files["Observation"]} == {
            f"Patient/{files['Patient'][0]['id']}"
        }
        assert manifest["extension"][EXTENSION]["mergedRecords"] == 1


async def test_worker_processes_write_the_same_export(tmp_path: Path, monkeypatch: Any) -> None:
    """Pages de-identified in a worker process (what large exports do) get what their Patients are with
    each page (nothing per child is held by the worker): the files are the same as from a thread."""
    from fhir_server.export import job

    async for world in open_world(tmp_path, export_k=1, export_processes=1):
        await _register_kitti_twice(world)
        researcher = await world.caller("study", "Organization/research", "researcher")
        runs = []
        for rows_before_workers in (10**9, 0):  # a thread of the server; then a worker from the first page
            monkeypatch.setattr(job, "_ROWS_BEFORE_WORKERS", rows_before_workers)
            manifest = await wait_manifest(researcher, await kick_off(researcher, "Patient/$export"))
            runs.append((await download(researcher, manifest), manifest["extension"][EXTENSION]))
        assert runs[0] == runs[1]
        files = runs[1][0]
        assert len(files["Patient"]) == 1 and runs[1][1]["mergedRecords"] == 1
        kitti = f"Patient/{files['Patient'][0]['id']}"
        assert {w["subject"]["reference"] for w in files["Observation"]} == {kitti}
