"""The resumable job that links the Patients already stored (stores older than the identity layer).

It runs the same engine as new writes (``linker.link_source``) over every source Patient, a batch per
store transaction, and checkpoints its position in the key/value area (namespace ``identity-link``) so
a restarted server or command resumes where it stopped. Running it again on a linked store changes
nothing (each golden record is written only when its content changes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fhir_server.identity import linker
from fhir_server.identity.model import is_golden_body

NAMESPACE = "identity-link"
JOB_ID = "link-existing"
BATCH = 200
_tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}
log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def status(store: Any) -> dict[str, Any] | None:
    return await store.kv_get(NAMESPACE, JOB_ID)


async def create(store: Any, *, restart: bool = False) -> dict[str, Any]:
    """The job record (a new one when none exists, or when ``restart`` asks to go over everything again)."""
    job = await store.kv_get(NAMESPACE, JOB_ID)
    if job is None or restart or (job.get("status") == "complete" and restart):
        job = {
            "id": JOB_ID,
            "status": "queued",
            "position": 0,
            "processed": 0,
            "linked": 0,
            "created": 0,
            "queued": 0,
            "started": _now(),
        }
        await store.kv_put(NAMESPACE, JOB_ID, job)
    return job


async def run(store: Any, progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the job to completion, checkpointing after every batch; returns the record."""
    job = await create(store)
    if job["status"] == "complete":
        return job
    job["status"] = "running"
    seen = 0
    batch: list[str] = []

    async def flush() -> None:
        report = linker.LinkReport()
        async with store.transaction() as tx:
            for source_id in batch:
                await linker.link_source(tx, source_id, report)
        job["processed"] += len(batch)
        job["linked"] += sum(1 for _, _, rule in report.linked if rule != "new-record")
        job["created"] += len(report.created)
        job["queued"] += len(report.queued)
        job["position"] = seen
        batch.clear()
        await store.kv_put(NAMESPACE, JOB_ID, job)
        if progress is not None:
            progress(job)

    async for stored in store.iterate("Patient"):
        seen += 1
        if seen <= job["position"] or is_golden_body(stored.body):
            continue
        batch.append(stored.id)
        if len(batch) >= BATCH:
            await flush()
    if batch:
        await flush()
    job["position"] = seen
    job["status"] = "complete"
    job["finished"] = _now()
    await store.kv_put(NAMESPACE, JOB_ID, job)
    return job


def start(store: Any) -> None:
    """Run the job in the background of a server (one task per store)."""
    key = f"{id(store)}"
    task = _tasks.get(key)
    if task is not None and not task.done():
        return
    _tasks[key] = asyncio.get_running_loop().create_task(run(store))


async def resume(store: Any) -> None:
    """Start-up: carry on with an unfinished job from its checkpoint."""
    job = await status(store)
    if job is not None and job.get("status") != "complete":
        start(store)


async def stop_all() -> None:
    tasks = [t for t in _tasks.values() if not t.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    _tasks.clear()
