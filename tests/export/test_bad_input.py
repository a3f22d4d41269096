"""Every bad kick-off gets the right status and an OperationOutcome, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_server import jobs
from tests.export.conftest import download, kick_off, wait_manifest
from tests.security import scene
from tests.security.conftest import World


async def _refused(world: World, reply: Any, status: int, words: str, where: str | None = None) -> None:
    assert reply.status_code == status, reply.text
    outcome = reply.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert words in outcome["issue"][0]["diagnostics"], outcome
    if where is not None:
        assert outcome["issue"][0]["expression"] == [where]
    # nothing half-written: no job recorded, no export folder
    assert await jobs.list_jobs(world.store, kind="export") == []
    folder = Path(world.app.state.settings.export_path())
    assert not folder.exists() or not any(folder.iterdir())


async def test_kick_off_refusals(world: World) -> None:
    s = await scene.build(world)
    h = s.hospital
    await _refused(world, await h.get("$export"), 400, "Prefer: respond-async", "Prefer")
    cases = [
        ("$export?_type=Patient,NotAType", 400, "not a FHIR resource type", "_type"),
        ("$export?_since=yesterday", 400, "_since must be a FHIR instant", "_since"),
        ("$export?_since=2024-01-01", 400, "_since must be a FHIR instant", "_since"),
        ("$export?_typeFilter=Observation", 400, "Type?search-parameters", "_typeFilter"),
        ("$export?_typeFilter=Observation%3Fnope%3D1", 400, "nope", "_typeFilter"),
        ("$export?_typeFilter=Observation%3Fdate%3Dnot-a-date", 400, "_typeFilter", "_typeFilter"),
        (
            "$export?_type=Patient&_typeFilter=Observation%3Fstatus%3Dfinal",
            400,
            "not one of the types",
            "_typeFilter",
        ),
        ("$export?_outputFormat=application/fhir%2Bjson", 400, "not written by this server", "_outputFormat"),
        ("$export?_outputFormat=text/csv", 400, "not written by this server", "_outputFormat"),
        ("$export?_elements=bad..name", 400, "not an element name", "_elements"),
        ("$export?patient=Patient/child1", 400, "Patient- and Group-level", "patient"),
        ("$export?unknownParam=1", 400, "not supported", "unknownParam"),
        ("$export?includeAssociatedData=LatestProvenanceResources", 400, "not supported", None),
        ("Patient/$export?_type=Organization", 400, "not in the Patient compartment", "_type"),
        ("Patient/$export?patient=Patient/nobody", 404, "not known", "patient"),
        ("Group/nope/$export", 404, "Group/nope is not known", None),
    ]
    for url, status, words, where in cases:
        await _refused(world, await h.get(url, prefer="respond-async"), status, words, where)
    bad_body = {"resourceType": "Parameters", "parameter": [{"name": "_since"}]}
    await _refused(world, await h.post("$export", bad_body, prefer="respond-async"), 400, "has no value")


async def test_a_group_the_caller_may_not_see_is_answered_like_a_missing_one(world: World) -> None:
    s = await scene.build(world)
    group = await s.hospital.create(
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": "Patient/child1"}}],
        }
    )
    hidden = await s.school.get(f"Group/{group['id']}/$export", prefer="respond-async")
    missing = await s.school.get("Group/does-not-exist/$export", prefer="respond-async")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"] == "not-found"
    assert await jobs.list_jobs(world.store, kind="export") == []
    # a characteristic-defined Group cannot be evaluated: said so, not silently exported empty
    described = await s.hospital.create(
        {
            "resourceType": "Group",
            "type": "person",
            "actual": False,
            "characteristic": [{"code": {"text": "age"}, "valueBoolean": True, "exclude": False}],
        }
    )
    reply = await s.hospital.get(f"Group/{described['id']}/$export", prefer="respond-async")
    await _refused(world, reply, 400, "characteristic", "Group.characteristic")


async def test_lenient_leaves_out_what_it_can_and_says_so(world: World) -> None:
    s = await scene.build(world)
    url = await kick_off(
        s.hospital,
        "Patient/$export?_type=Observation,NotAType&patient=Patient/child1,Patient/nobody"
        "&includeAssociatedData=LatestProvenanceResources&_typeFilter=Observation%3Fnope%3D1",
        prefer="respond-async, handling=lenient",
    )
    manifest = await wait_manifest(s.hospital, url)
    assert [(e["type"], e["count"]) for e in manifest["output"]] == [("Observation", 3)]
    notes = " | ".join(
        o["issue"][0]["diagnostics"]
        for o in (await download(s.hospital, manifest, "error"))["OperationOutcome"]
    )
    for words in ("NotAType", "Patient/nobody", "LatestProvenanceResources", "nope"):
        assert words in notes
    # lenient never makes us write another format
    reply = await s.hospital.get("$export?_outputFormat=text/csv", prefer="respond-async, handling=lenient")
    assert reply.status_code == 400


async def test_types_the_caller_may_not_read_are_refused(world: World) -> None:
    await scene.build(world)
    researcher = await world.caller("study", "Organization/research", "researcher")
    reply = await researcher.get("$export?_type=RelatedPerson", prefer="respond-async")
    assert reply.status_code == 403
    reply = await researcher.get("$export?_type=Organization", prefer="respond-async")
    assert reply.status_code == 400 and "de-identified" in reply.text
    reply = await researcher.get("$export?deidentify=false", prefer="respond-async")
    assert reply.status_code == 403
    auditor = await world.caller("audit", "Organization/ops", "auditor")
    assert (await auditor.get("$export?_type=Observation", prefer="respond-async")).status_code == 403
    assert await jobs.list_jobs(world.store, kind="export") == []
