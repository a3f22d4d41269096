"""Job records in the store: submit, read, list, cancel, pause and resume, all by compare-and-set.

Every change is a read, a pure change function and ``kv_compare_and_set``; when another writer got
there first the change is computed again on the new record, so no update is ever lost between server
processes sharing one store.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhir_server.jobs import kinds
from fhir_server.jobs.model import FINISHED, NAMESPACE, Job, new_job_id, now_instant

if TYPE_CHECKING:
    from fhir_server.jobs.runner import JobRunner

# Runners of this process, told about submissions and cancellations at once (others poll).
_local_runners: weakref.WeakSet[JobRunner] = weakref.WeakSet()


def attach(runner: JobRunner) -> None:
    _local_runners.add(runner)


def detach(runner: JobRunner) -> None:
    _local_runners.discard(runner)


def _wake() -> None:
    for runner in list(_local_runners):
        runner.wake()


async def swap(store: Any, job_id: str, change: Callable[[Job], Job | None]) -> Job | None:
    """Apply ``change`` to the job atomically; ``change`` returns None to leave it as it is.

    Returns the job as stored afterwards (None when there is no such job).
    """
    while True:
        raw = await store.kv_get(NAMESPACE, job_id)
        if raw is None:
            return None
        job = Job.from_record(raw)
        new = change(job)
        if new is None:
            return job
        if await store.kv_compare_and_set(NAMESPACE, job_id, raw, new.record()):
            return new


async def submit(
    store: Any,
    kind: str,
    params: dict[str, Any],
    *,
    owner: str | None = None,
    job_id: str | None = None,
) -> Job:
    """Record a queued job; a runner picks it up. With ``job_id`` given and already recorded, the
    recorded job is returned unchanged (submitting the same work twice is safe)."""
    if kinds.get(kind) is None:
        raise ValueError(f"unknown job kind '{kind}' (known: {', '.join(kinds.names())})")
    job = Job(id=job_id or new_job_id(), kind=kind, owner=owner, params=params)
    while not await store.kv_compare_and_set(NAMESPACE, job.id, None, job.record()):
        existing = await get(store, job.id)
        if existing is not None:
            return existing
    _wake()
    return job


async def get(store: Any, job_id: str) -> Job | None:
    raw = await store.kv_get(NAMESPACE, job_id)
    return Job.from_record(raw) if raw is not None else None


async def list_jobs(store: Any, kind: str | None = None, owner: str | None = None) -> list[Job]:
    jobs = [Job.from_record(raw) for _, raw in await store.kv_list(NAMESPACE)]
    return [j for j in jobs if (kind is None or j.kind == kind) and (owner is None or j.owner == owner)]


def finished(job: Job, state: str, **changes: Any) -> Job:
    """``job`` ended in ``state``: no lease, a finishing time, and an expiry per its kind."""
    kind = kinds.get(job.kind)
    keep = kind.keep_seconds if kind is not None else None
    if isinstance(job.params.get("keep_seconds"), int | float):
        keep = float(job.params["keep_seconds"])  # a job's own retention (e.g. an export's expiry setting)
    return job.but(
        state=state,
        lease_holder=None,
        lease_until=0.0,
        finished=now_instant(),
        expires=(time.time() + keep) if keep is not None else None,
        **changes,
    )


async def cancel(store: Any, job_id: str) -> Job | None:
    """Cancel a job. A queued or paused job is cancelled at once and its partial output removed; a
    running one is asked to stop, and its runner cancels it at its next checkpoint (or, if that runner
    died, whoever claims it next). Finished jobs stay as they are.
    """

    stopped_here = False

    def change(job: Job) -> Job | None:
        nonlocal stopped_here
        stopped_here = False
        if job.state in FINISHED or job.cancel_requested:
            return None
        if job.state == "running":
            return job.but(cancel_requested=True)
        stopped_here = True
        return finished(job, "cancelled", cancel_requested=True)

    job = await swap(store, job_id, change)
    if job is not None and stopped_here:
        kind = kinds.get(job.kind)
        if kind is not None and kind.on_cancel is not None:
            await kind.on_cancel(store, job)
    _wake()
    return job


async def pause(store: Any, job_id: str) -> Job | None:
    """Stop a job at its next checkpoint and keep it until ``resume``."""

    def change(job: Job) -> Job | None:
        if job.state == "queued":
            return job.but(state="paused")
        if job.state == "running" and not job.pause_requested:
            return job.but(pause_requested=True)
        return None

    return await swap(store, job_id, change)


async def resume(store: Any, job_id: str) -> Job | None:
    """Queue a paused job again; it carries on from its checkpoint."""

    def change(job: Job) -> Job | None:
        if job.state == "paused":
            return job.but(state="queued", pause_requested=False)
        if job.state == "running" and job.pause_requested:
            return job.but(pause_requested=False)
        return None

    job = await swap(store, job_id, change)
    _wake()
    return job


async def remove(store: Any, job_id: str) -> bool:
    """Forget a finished job's record (its output is the kind's business)."""
    while True:
        raw = await store.kv_get(NAMESPACE, job_id)
        if raw is None:
            return False
        if Job.from_record(raw).state not in FINISHED:
            raise ValueError(f"job {job_id} is still {raw['state']}: cancel it first")
        if await store.kv_compare_and_set(NAMESPACE, job_id, raw, None):
            return True
