"""Cohorts and ``_since`` deletions of a child registered by several agencies (linked by the identity
layer to one golden record), over HTTP with auth on.

- A cohort (Group member list, member-filter criteria, or the ``patient`` parameter) naming one agency's
  record of the child exports the child: every record of it the caller may see, at the other agencies
  too (one pseudonymous child in a de-identified export); a record the caller may not see brings
  nothing, and nothing the caller may not see ever leaves.
- In a de-identified ``_since`` export, one agency deleting its record does not delete the child's
  pseudonymous Patient while another record of the child remains that the caller may see; it is reported
  deleted once, when none remains. A plain export reports each agency record's deletion as it is.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fhir_server.export.cohort import MEMBER_FILTER
from fhir_server.jobs.model import now_instant
from tests.export.conftest import download, kick_off, open_world, wait_manifest
from tests.identity.helpers import child
from tests.security import scene
from tests.security.conftest import Caller, World

KITTI = "1103700123458"  # one Thai citizen id: every agency's record of him links to one golden record
_RESEARCH = {"agency_types": ("research",), "purposes": ("HRESCH",), "classes": ("demographics", "growth")}


async def _kitti(world: World, consenting: tuple[str, ...] = ("cc", "hosp"), *others: str) -> dict[str, Any]:
    """Kitti registered by each agency named (each weighs him once); the guardian's research consent is
    recorded by the ``consenting`` agencies for their own records, not by the ``others``."""
    await scene.build(world)
    roles = {"cc": "childcare", "hosp": "hospital", "sw": "social-worker"}
    ids: dict[str, Any] = {"records": {}, "weights": {}, "callers": {}}
    for name in (*consenting, *others):
        agency = await world.caller(f"{name}-app", f"Organization/{name}", roles[name])
        record = (await agency.create(child(KITTI, birth="2021-03-15")))["id"]
        weight = {**scene.observation(record, scene.GROWTH, "weight"), "effectiveDateTime": "2024-05-02"}
        ids["records"][name] = record
        ids["weights"][name] = (await agency.create(weight))["id"]
        ids["callers"][name] = agency
        if name in consenting:
            reply = await agency.post("Consent", scene.consent(record, **_RESEARCH))
            assert reply.status_code == 201, reply.text
    return ids


async def _export(caller: Caller, path: str) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    manifest = await wait_manifest(caller, await kick_off(caller, path))
    return manifest, await download(caller, manifest)


async def _group(caller: Caller, group: dict[str, Any]) -> str:
    reply = await caller.post("Group", {"resourceType": "Group", "type": "person", **group})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def _members(*records: str) -> dict[str, Any]:
    return {"actual": True, "member": [{"entity": {"reference": f"Patient/{r}"}} for r in records]}


def _patient(record: str) -> dict[str, Any]:
    return {"name": "patient", "valueReference": {"reference": f"Patient/{record}"}}


def _criteria(expression: str) -> dict[str, Any]:
    return {
        "actual": False,
        "extension": [
            {
                "url": MEMBER_FILTER,
                "valueExpression": {"language": "application/x-fhir-query", "expression": expression},
            }
        ],
    }


async def test_a_cohort_naming_one_record_exports_the_whole_child_deidentified(tmp_path: Path) -> None:
    async for world in open_world(tmp_path, export_k=1):
        # the social-welfare office keeps Kitti too, with no research consent: never exported
        ids = await _kitti(world, ("cc", "hosp"), "sw")
        cc, hosp, sw = (ids["records"][n] for n in ("cc", "hosp", "sw"))
        researcher = await world.caller("study", "Organization/research", "researcher")
        _, everything = await _export(researcher, "Patient/$export")
        (kitti,) = everything["Patient"]
        pseudonym = f"Patient/{kitti['id']}"
        assert len(everything["Observation"]) == 2  # the childcare's and the hospital's weights

        listed = await _group(researcher, _members(cc))
        by_criteria = await _group(researcher, _criteria(f"Observation?subject=Patient/{hosp}"))
        named = {"resourceType": "Parameters", "parameter": [_patient(hosp)]}
        reply = await researcher.post("Patient/$export", named, prefer="respond-async")
        assert reply.status_code == 202, reply.text
        for path in (
            f"Group/{listed}/$export",
            f"Group/{by_criteria}/$export",
            reply.headers["content-location"],
        ):
            if "/_export/" in path:
                manifest = await wait_manifest(researcher, path)
                files = await download(researcher, manifest)
            else:
                manifest, files = await _export(researcher, path)
            # one pseudonymous child, with both agencies' weights and consents: what a Patient-level
            # export holds of him, no more (the social-welfare office's weight never leaves)
            assert [p["id"] for p in files["Patient"]] == [kitti["id"]], path
            assert [o["subject"]["reference"] for o in files["Observation"]] == [pseudonym] * 2, path
            assert {c["patient"]["reference"] for c in files["Consent"]} == {pseudonym}, path
            assert len(files["Consent"]) == 2, path
            assert sorted(files) == sorted(everything), path

        # a cohort naming only the record the researcher may not see is answered as an unknown child
        hidden = await _group(researcher, _members(sw))
        ghost = await _group(researcher, _members("no-such-child"))
        for gid in (hidden, ghost):
            manifest, files = await _export(researcher, f"Group/{gid}/$export")
            assert manifest["output"] == [] and files == {}
        answers = []
        for record in (sw, "no-such-child"):
            named = {"resourceType": "Parameters", "parameter": [_patient(record)]}
            reply = await researcher.post("Patient/$export", named, prefer="respond-async")
            answers.append((reply.status_code, reply.text.replace(record, "X")))
        assert answers[0] == answers[1] and answers[0][0] == 404


async def test_a_cohort_naming_one_record_exports_every_visible_record_plain(tmp_path: Path) -> None:
    async for world in open_world(tmp_path, export_k=1):
        ids = await _kitti(world, ("cc", "hosp"))
        cc, hosp = ids["records"]["cc"], ids["records"]["hosp"]
        s_admin = await world.caller("admin-2", "Organization/ops", "admin")
        gid = await _group(s_admin, _members(cc))
        _, files = await _export(s_admin, f"Group/{gid}/$export?_type=Patient,Observation")
        # both agencies' records as they are (real ids), never the server's golden record
        assert sorted(p["id"] for p in files["Patient"]) == sorted([cc, hosp])
        assert sorted(o["id"] for o in files["Observation"]) == sorted(ids["weights"].values())

        # the hospital sees only its own record of Kitti: naming it exports only that, and naming the
        # childcare's record (which it may not see) exports nothing at all
        hospital: Caller = ids["callers"]["hosp"]
        own = await _group(hospital, _members(hosp))
        _, files = await _export(hospital, f"Group/{own}/$export?_type=Patient,Observation")
        assert [p["id"] for p in files["Patient"]] == [hosp]
        assert [o["id"] for o in files["Observation"]] == [ids["weights"]["hosp"]]
        theirs = await _group(hospital, _members(cc))
        manifest, _ = await _export(hospital, f"Group/{theirs}/$export")
        assert manifest["output"] == []


def _deleted_urls(files: dict[str, list[dict[str, Any]]]) -> list[str]:
    return sorted(e["request"]["url"] for b in files.get("Bundle", []) for e in b["entry"])


async def test_since_reports_a_linked_child_deleted_only_when_no_record_remains(tmp_path: Path) -> None:
    async for world in open_world(tmp_path, export_k=1):
        ids = await _kitti(world, ("cc", "hosp"))
        cc, hosp = ids["records"]["cc"], ids["records"]["hosp"]
        researcher = await world.caller("study", "Organization/research", "researcher")
        admin = await world.caller("admin-2", "Organization/ops", "admin")
        _, files = await _export(researcher, "Patient/$export?_type=Patient")
        pseudonym = files["Patient"][0]["id"]
        await asyncio.sleep(0.01)
        since = now_instant()
        await asyncio.sleep(0.01)

        # the childcare centre deletes its record: the hospital's record of Kitti remains
        assert (await ids["callers"]["cc"].delete(f"Patient/{cc}")).status_code in (200, 204)
        manifest, files = await _export(researcher, f"Patient/$export?_since={since}")
        assert manifest["deleted"] == [] and "Patient" not in files
        # a plain export reports the childcare's record deleted, as it is (and no golden record)
        manifest = await wait_manifest(admin, await kick_off(admin, f"Patient/$export?_since={since}"))
        assert _deleted_urls(await download(admin, manifest, "deleted")) == [f"Patient/{cc}"]

        # the hospital deletes its record too: now the child is gone, reported once
        assert (await ids["callers"]["hosp"].delete(f"Patient/{hosp}")).status_code in (200, 204)
        manifest = await wait_manifest(
            researcher, await kick_off(researcher, f"Patient/$export?_since={since}")
        )
        deleted = await download(researcher, manifest, "deleted")
        assert _deleted_urls(deleted) == [f"Patient/{pseudonym}"]
        assert all(b["type"] == "transaction" for b in deleted["Bundle"])
        manifest = await wait_manifest(admin, await kick_off(admin, f"Patient/$export?_since={since}"))
        assert _deleted_urls(await download(admin, manifest, "deleted")) == sorted(
            [f"Patient/{cc}", f"Patient/{hosp}"]
        )


async def test_since_reports_the_child_deleted_when_the_records_left_are_hidden(tmp_path: Path) -> None:
    async for world in open_world(tmp_path, export_k=1):
        # the social-welfare office keeps Kitti without a research consent: the researcher never sees it
        ids = await _kitti(world, ("cc",), "sw")
        researcher = await world.caller("study", "Organization/research", "researcher")
        _, files = await _export(researcher, "Patient/$export?_type=Patient")
        pseudonym = files["Patient"][0]["id"]
        await asyncio.sleep(0.01)
        since = now_instant()
        await asyncio.sleep(0.01)
        cc = ids["records"]["cc"]
        assert (await ids["callers"]["cc"].delete(f"Patient/{cc}")).status_code in (200, 204)
        manifest = await wait_manifest(
            researcher, await kick_off(researcher, f"Patient/$export?_since={since}")
        )
        assert _deleted_urls(await download(researcher, manifest, "deleted")) == [f"Patient/{pseudonym}"]
