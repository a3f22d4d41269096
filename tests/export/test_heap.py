"""An export gives the C heap's freed page memory back at every checkpoint (its resident memory stays
flat over a long export instead of creeping up: ``fhir_server/export/heap.py``; the figures are in the
export benchmark, never asserted in a test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_server.export import heap, job
from tests.export.conftest import download, kick_off, open_world, wait_manifest
from tests.security import scene


def test_the_heap_can_be_given_back() -> None:
    heap.give_back()  # glibc's malloc_trim here; a no-op where there is none


async def test_an_export_gives_freed_memory_back_at_each_checkpoint(tmp_path: Path, monkeypatch: Any) -> None:
    calls: list[int] = []
    monkeypatch.setattr(heap, "give_back", lambda: calls.append(1))
    monkeypatch.setattr(job, "_CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every page
    async for world in open_world(tmp_path, export_page_bytes=1):  # one resource per page
        s = await scene.build(world)
        manifest = await wait_manifest(s.hospital, await kick_off(s.hospital, "Patient/$export"))
        written = sum(len(rs) for rs in (await download(s.hospital, manifest)).values())
        assert written >= 6
        assert len(calls) >= written  # after the plan, and at each page's checkpoint
