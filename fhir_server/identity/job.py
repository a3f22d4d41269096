"""The job that links the Patients already stored (stores older than the identity layer).

A job of the shared runner (``fhir_server.jobs``, kind ``identity-link``): recorded in the store,
claimed with a compare-and-set lease by one server process (or the command), checkpointed after every
batch, and resumed from its checkpoint by whichever process claims it after a crash or a shutdown.
It runs the same engine as new writes (``linker.link_source``) over every source Patient, a batch per
store transaction. Running it again on a linked store changes nothing (each golden record is written
only when its content changes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fhir_server import jobs
from fhir_server.identity import linker
from fhir_server.identity.model import is_golden_body

KIND = "identity-link"
BATCH = 200
_COUNTS = ("processed", "linked", "created", "queued")
_LEGACY_NAMESPACE, _LEGACY_ID = "identity-link", "link-existing"  # the job's record before the runner
# Progress callbacks of runs in this process (the command prints them), by job id.
_progress: dict[str, Callable[[dict[str, Any]], None]] = {}
log = logging.getLogger(__name__)


async def _run(handle: jobs.JobHandle, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    state: dict[str, Any] = dict(checkpoint or {"position": 0, **dict.fromkeys(_COUNTS, 0)})
    store = handle.store
    seen = 0
    batch: list[str] = []

    async def flush() -> None:
        report = linker.LinkReport()
        async with store.transaction() as tx:
            for source_id in batch:
                await linker.link_source(tx, source_id, report)
        state["processed"] += len(batch)
        state["linked"] += sum(1 for _, _, rule in report.linked if rule != "new-record")
        state["created"] += len(report.created)
        state["queued"] += len(report.queued)
        state["position"] = seen
        batch.clear()
        await handle.save(dict(state), done=state["processed"], message="linking stored Patients")
        callback = _progress.get(handle.id)
        if callback is not None:
            callback(record(handle.job.but(state="running", checkpoint=state)))

    async for stored in store.iterate("Patient"):
        seen += 1
        if seen <= state["position"] or is_golden_body(stored.body):
            continue
        batch.append(stored.id)
        if len(batch) >= BATCH:
            await flush()
    if batch:
        await flush()
    return {key: state[key] for key in _COUNTS}


jobs.register(jobs.JobKind(KIND, _run, keep_seconds=None))


def record(job: jobs.Job | None) -> dict[str, Any]:
    """What the command and ``$identity-link-existing`` report of a job."""
    if job is None:
        return {"status": "none", **dict.fromkeys(_COUNTS, 0)}
    counts = job.result if job.state == "completed" and job.result else (job.checkpoint or {})
    status = {"completed": "complete"}.get(job.state, job.state)
    out = {"id": job.id, "status": status, **{key: int(counts.get(key, 0)) for key in _COUNTS}}
    if job.error:
        out["error"] = job.error
    return out


async def latest(store: Any) -> jobs.Job | None:
    recorded = await jobs.list_jobs(store, kind=KIND)
    return max(recorded, key=lambda j: j.created) if recorded else None


async def submit(store: Any, *, restart: bool = False, owner: str | None = None) -> jobs.Job:
    """The linking job: the one under way (or the one that completed, unless ``restart`` asks to go
    over every record again), else a new one. Failed or cancelled jobs are followed by a new one."""
    current = await latest(store)
    if current is not None and current.state in jobs.ACTIVE:
        if current.state == "paused":
            await jobs.resume(store, current.id)
        return current
    if current is not None and current.state == "completed" and not restart:
        return current
    return await jobs.submit(store, KIND, {}, owner=owner)


async def run(
    store: Any,
    progress: Callable[[dict[str, Any]], None] | None = None,
    *,
    restart: bool = False,
    lease_seconds: float = 30.0,
) -> dict[str, Any]:
    """Run (or resume, or wait for another process's run of) the job to its end, in this task."""
    job = await submit(store, restart=restart)
    if job.state == "completed":
        return record(job)
    if progress is not None:
        _progress[job.id] = progress
    try:
        return record(await jobs.run_now(store, job.id, lease_seconds=lease_seconds))
    finally:
        _progress.pop(job.id, None)


async def status(store: Any) -> dict[str, Any]:
    return record(await latest(store))


async def adopt_legacy(store: Any) -> None:
    """Start-up: a linking job recorded by a server before the shared runner (its own key/value record)
    becomes a runner job (linking is idempotent, so it starts over); the old record goes."""
    legacy = await store.kv_get(_LEGACY_NAMESPACE, _LEGACY_ID)
    if legacy is None:
        return
    if legacy.get("status") != "complete":
        job = await submit(store)
        log.info("unfinished linking job of an earlier version carries on as job %s", job.id)
    await store.kv_delete(_LEGACY_NAMESPACE, _LEGACY_ID)
