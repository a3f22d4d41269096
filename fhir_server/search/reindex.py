"""The resumable ``$reindex`` job that makes new custom SearchParameters searchable.

A job (kind ``reindex`` of the shared job runner, ``fhir_server.jobs``) re-extracts the index of every
current resource of the parameters' base types, checkpointing as it goes so a restarted server resumes
where it stopped; when a job completes, its parameters stop being refused in searches.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from fhir_server import jobs
from fhir_server.search import registry
from fhir_server.search.extract import extract_index

KIND = "reindex"
_CHECKPOINT_EVERY = 500


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
    store: Any, urls: list[str] | None = None, types: list[str] | None = None, *, owner: str | None = None
) -> jobs.Job:
    """Record a job for ``urls`` (default: every pending custom parameter); returns it.

    An identical job already recorded (same definitions) is returned as it is, so re-running is safe.
    """
    chosen = sorted(urls if urls is not None else registry.pending_urls())
    job_types = sorted(types) if types else _types_for(chosen)
    job_id = (
        _fingerprint(chosen) if chosen else "all-" + hashlib.sha256(orjson.dumps(job_types)).hexdigest()[:24]
    )
    return await jobs.submit(store, KIND, {"urls": chosen, "types": job_types}, owner=owner, job_id=job_id)


async def _run(job: jobs.JobHandle, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    state = dict(checkpoint or {"typeIndex": 0, "position": 0, "processed": 0})
    types: list[str] = job.params["types"]
    store = job.store
    while state["typeIndex"] < len(types):
        rtype = types[state["typeIndex"]]
        seen = 0
        async for stored in store.iterate(rtype):
            seen += 1
            if seen <= state["position"]:
                continue  # done before a restart
            if not stored.deleted and stored.body:
                await store.reindex(stored, extract_index(orjson.loads(stored.body)))
            state["position"] = seen
            state["processed"] += 1
            if state["processed"] % _CHECKPOINT_EVERY == 0:
                await job.save(state, done=state["processed"], message=f"reindexing {rtype}")
        state["typeIndex"] += 1
        state["position"] = 0
        await job.save(state, done=state["processed"])
    _activate(job.id, job.params["urls"])
    return {"processed": state["processed"]}


jobs.register(jobs.JobKind(KIND, _run))


def _activate(job_id: str, urls: list[str]) -> None:
    """Make a completed job's parameters searchable, unless their definitions changed since."""
    if urls and job_id == _fingerprint(urls):
        for url in urls:
            registry.mark_reindexed(url)


async def status(store: Any, job_id: str) -> jobs.Job | None:
    job = await jobs.get(store, job_id)
    return job if job is not None and job.kind == KIND else None


async def _holds_any(store: Any, resource_type: str) -> bool:
    async for _ in store.iterate(resource_type):
        return True
    return False


async def _activate_with_nothing_to_index(store: Any) -> None:
    """Start-up only (no writes run yet): a pending parameter whose base types hold no resource at
    all is usable at once, so a fresh store never waits on a job for the parameters it ships with."""
    for url in sorted(registry.pending_urls()):
        types = _types_for([url])
        if types and not [t for t in types if await _holds_any(store, t)]:
            registry.mark_reindexed(url)


async def resume(store: Any) -> list[str]:
    """Start-up: activate parameters whose reindex completed, and record jobs for pending parameters
    that have none. Returns the ids of the unfinished jobs for pending parameters (the runner runs them).
    """
    recorded = await jobs.list_jobs(store, kind=KIND)
    for job in recorded:
        if job.state == "completed":
            _activate(job.id, job.params["urls"])
    await _activate_with_nothing_to_index(store)
    pending = sorted(registry.pending_urls())
    waiting = [
        j for j in recorded if j.state not in jobs.FINISHED and any(u in pending for u in j.params["urls"])
    ]
    covered = {u for j in waiting for u in j.params["urls"]}
    rest = [u for u in pending if u not in covered]
    if rest:
        job = await create_job(store, rest)
        if job.state == "completed":
            _activate(job.id, job.params["urls"])
        elif job.state in jobs.FINISHED:  # failed or cancelled before: try again
            await jobs.remove(store, job.id)
            waiting.append(await create_job(store, rest))
        else:
            waiting.append(job)
    return [j.id for j in waiting]
