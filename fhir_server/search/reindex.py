"""The resumable ``$reindex`` job that makes new custom SearchParameters searchable.

A job re-extracts the index of every current resource of the parameters' base types. Progress is
checkpointed in the store's key/value area (namespace ``reindex``) so a restarted server resumes
where it stopped; when a job completes, its parameters stop being refused in searches.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from fhir_server.search import registry
from fhir_server.search.extract import extract_index

NAMESPACE = "reindex"
_CHECKPOINT_EVERY = 500
_tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}
log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _fingerprint(urls: list[str]) -> str:
    """A job id that changes when any parameter's definition changes, so edits trigger a new job."""
    parts = []
    for url in sorted(urls):
        sp = registry.definition(url) or {}
        parts.append(f"{url}|{sp.get('expression')}|{sorted(sp.get('base', []) or [])}")
    return "sp-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _types_for(urls: list[str]) -> list[str]:
    types: set[str] = set()
    for p in registry.custom_parameters():
        if p.url in urls:
            types.add(p.resource_type)
    return sorted(types)


async def create_job(
    store: Any, urls: list[str] | None = None, types: list[str] | None = None
) -> dict[str, Any]:
    """Record a job for ``urls`` (default: every pending custom parameter); returns the job record.

    An identical job already recorded (same definitions) is returned as it is, so re-running is safe.
    """
    chosen = sorted(urls if urls is not None else registry.pending_urls())
    job_types = sorted(types) if types else _types_for(chosen)
    job_id = (
        _fingerprint(chosen) if chosen else "all-" + hashlib.sha256(orjson.dumps(job_types)).hexdigest()[:24]
    )
    existing = await store.kv_get(NAMESPACE, job_id)
    if existing is not None:
        return existing
    job = {
        "id": job_id,
        "urls": chosen,
        "types": job_types,
        "typeIndex": 0,
        "position": 0,
        "processed": 0,
        "status": "queued",
        "created": _now(),
    }
    await store.kv_put(NAMESPACE, job_id, job)
    return job


async def run_job(store: Any, job_id: str) -> dict[str, Any]:
    """Run (or resume) a job to completion, checkpointing as it goes; returns the final record."""
    job = await store.kv_get(NAMESPACE, job_id)
    if job is None:
        raise KeyError(job_id)
    if job["status"] == "complete":
        _activate(job)
        return job
    job["status"] = "running"
    types: list[str] = job["types"]
    while job["typeIndex"] < len(types):
        rtype = types[job["typeIndex"]]
        seen = 0
        async for stored in store.iterate(rtype):
            seen += 1
            if seen <= job["position"]:
                continue  # done before a restart
            if not stored.deleted and stored.body:
                await store.reindex(stored, extract_index(orjson.loads(stored.body)))
            job["position"] = seen
            job["processed"] += 1
            if job["processed"] % _CHECKPOINT_EVERY == 0:
                await store.kv_put(NAMESPACE, job_id, job)
        job["typeIndex"] += 1
        job["position"] = 0
        await store.kv_put(NAMESPACE, job_id, job)
    job["status"] = "complete"
    job["finished"] = _now()
    await store.kv_put(NAMESPACE, job_id, job)
    _activate(job)
    return job


def _activate(job: dict[str, Any]) -> None:
    """Make a completed job's parameters searchable, unless their definitions changed since."""
    if job["urls"] and job["id"] == _fingerprint(job["urls"]):
        for url in job["urls"]:
            registry.mark_reindexed(url)


def start_job(store: Any, job_id: str) -> None:
    """Run a job in the background (one task per job)."""
    task = _tasks.get(job_id)
    if task is not None and not task.done():
        return
    _tasks[job_id] = asyncio.get_running_loop().create_task(run_job(store, job_id))


async def wait(job_id: str) -> dict[str, Any] | None:
    task = _tasks.get(job_id)
    return await task if task is not None else None


async def status(store: Any, job_id: str) -> dict[str, Any] | None:
    return await store.kv_get(NAMESPACE, job_id)


async def resume(store: Any) -> list[str]:
    """Start-up: activate parameters whose reindex completed, resume unfinished jobs, and start jobs
    for pending parameters that have none. Returns the ids of jobs started."""
    started = []
    jobs = dict(await store.kv_list(NAMESPACE))
    for job in jobs.values():
        if job["status"] == "complete":
            _activate(job)
    pending = sorted(registry.pending_urls())
    for job in jobs.values():
        if job["status"] != "complete" and any(u in pending for u in job["urls"]):
            start_job(store, job["id"])
            started.append(job["id"])
    covered = {u for j in jobs.values() if j["id"] in started for u in j["urls"]}
    rest = [u for u in pending if u not in covered]
    if rest:
        job = await create_job(store, rest)
        if job["status"] == "complete":
            _activate(job)
        else:
            start_job(store, job["id"])
            started.append(job["id"])
    return started


async def settle(job_ids: list[str], timeout: float) -> None:
    """Wait up to ``timeout`` seconds for these jobs (start-up lets small ones finish first)."""
    tasks = [task for job_id in job_ids if (task := _tasks.get(job_id)) is not None]
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)


def job_counts() -> dict[str, int]:
    """Jobs of this process by state (``running``, ``finished``, ``failed``), for the metrics."""
    counts = {"running": 0, "finished": 0, "failed": 0}
    for task in _tasks.values():
        if not task.done():
            counts["running"] += 1
        elif task.cancelled() or task.exception() is not None:
            counts["failed"] += 1
        else:
            counts["finished"] += 1
    return counts


async def stop_all() -> None:
    """Cancel running jobs (shutdown); each resumes from its checkpoint on the next start."""
    tasks = [task for task in _tasks.values() if not task.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    _tasks.clear()
