"""_since with deletions, _typeFilter, _elements, split files,, a 4 MB resource past a small page budget."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from fhir_server.jobs.model import now_instant
from tests.export.conftest import download, kick_off, open_world, wait_manifest
from tests.security import scene


async def test_since_exports_changes_and_lists_deletions(tmp_path: Path) -> None:
    async for world in open_world(tmp_path):
        s = await scene.build(world)
        await asyncio.sleep(0.01)
        since = now_instant()
        await asyncio.sleep(0.01)
        changed = await s.hospital.create(scene.observation("child1", None, "new after since"))
        assert (await s.hospital.delete(f"Observation/{s.ids['child2-cond']}")).status_code in (200, 204)
        manifest = await wait_manifest(
            s.hospital, await kick_off(s.hospital, f"Patient/$export?_since={since}")
        )
        files = await download(s.hospital, manifest)
        assert [o["id"] for o in files["Observation"]] == [changed["id"]]
        deleted = await download(s.hospital, manifest, "deleted")
        bundles = deleted["Bundle"]
        assert len(bundles) == 1 and bundles[0]["type"] == "transaction"
        assert bundles[0]["entry"][0]["request"] == {
            "method": "DELETE",
            "url": f"Observation/{s.ids['child2-cond']}",
        }
        # the school never saw child2's data: it is not told about its deletion either
        school = await wait_manifest(s.school, await kick_off(s.school, f"Patient/$export?_since={since}"))
        assert school["deleted"] == []


async def test_type_filter_and_elements(tmp_path: Path) -> None:
    async for world in open_world(tmp_path):
        s = await scene.build(world)
        url = (
            "Patient/$export?_type=Observation,Patient"
            f"&_typeFilter=Observation%3F_profile%3D{scene.GROWTH}"
            f"&_typeFilter=Observation%3F_profile%3D{scene.DEVELOPMENT}%26subject%3DPatient/child2"
            "&_elements=Observation.status,gender"
        )
        files = await download(s.hospital, await wait_manifest(s.hospital, await kick_off(s.hospital, url)))
        observations = files["Observation"]
        assert len(observations) == 3  # both growth Observations, child2's DSPM one (filters are OR)
        for o in observations:
            assert set(o) <= {"resourceType", "id", "meta", "status", "code"}  # code is mandatory: kept
            assert "SUBSETTED" in {t["code"] for t in o["meta"]["tag"]}
        assert all(set(p) <= {"resourceType", "id", "meta", "gender"} for p in files["Patient"])


async def test_files_split_at_the_size_limit_and_big_resources_pass_a_small_page_budget(
    tmp_path: Path,
) -> None:
    async for world in open_world(tmp_path, export_file_max_bytes=3000, export_page_bytes=64 * 1024):
        s = await scene.build(world)
        for n in range(20):
            await s.hospital.create(scene.observation("child1", None, f"visit {n}"))
        four_mb = base64.b64encode(b"\x89PNG" + bytes(3 * 1024 * 1024)).decode()
        media = await s.hospital.create(
            {
                "resourceType": "Media",
                "status": "completed",
                "subject": {"reference": "Patient/child1"},
                "content": {"contentType": "image/png", "data": four_mb},
            }
        )
        manifest = await wait_manifest(
            s.hospital, await kick_off(s.hospital, "Patient/$export?_type=Observation,Media")
        )
        observation_files = [e for e in manifest["output"] if e["type"] == "Observation"]
        assert len(observation_files) > 1 and sum(e["count"] for e in observation_files) == 26
        assert all(e["url"].endswith(f"Observation-{n}.ndjson") for n, e in enumerate(observation_files, 1))
        files = await download(s.hospital, manifest)
        assert files["Media"][0]["id"] == media["id"] and files["Media"][0]["content"]["data"] == four_mb
        folder = Path(world.app.state.settings.export_path())
        for path in folder.glob("*/Observation-*.ndjson"):
            assert path.stat().st_size <= 3000 or len(path.read_bytes().splitlines()) == 1
