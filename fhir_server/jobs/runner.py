"""The runner: claims queued (or abandoned) jobs from the store, runs them, and keeps their leases.

One runner per server process, started in the app's lifespan. It polls the store every
``poll_seconds`` (and at once when this process submits or cancels a job), claims a job with an atomic
compare-and-set that writes its own lease, and runs at most ``concurrency`` jobs at a time. While a job
runs its lease is renewed; a job whose lease ran out (its process died) is claimed again by any runner
and resumes from its last checkpoint. Several processes can share one store: a job is only ever run
by the runner holding its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Any

from fhir_server.jobs import kinds, records
from fhir_server.jobs.model import FINISHED, NAMESPACE, Job, JobCancelled

log = logging.getLogger("termtem.jobs")


def _holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobHandle:
    """What a running job sees: its parameters and checkpoint, and ``save`` to record progress.

    ``save`` writes the checkpoint and progress and renews the lease in one compare-and-set. It raises
    ``JobCancelled`` when the job must stop (cancelled, paused, the server is shutting down, or the
    lease was lost): stop there; what was saved is where the job resumes.
    """

    def __init__(self, store: Any, raw: dict[str, Any], holder: str, lease_seconds: float) -> None:
        self.store = store
        self._raw = raw
        self.job = Job.from_record(raw)
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.stop_reason: str | None = None  # cancel | pause | shutdown | lease-lost
        self._lock = asyncio.Lock()

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def params(self) -> dict[str, Any]:
        return self.job.params

    @property
    def owner(self) -> str | None:
        return self.job.owner

    def stop(self, reason: str) -> None:
        """Ask the job to stop at its next ``save`` (the first reason wins)."""
        self.stop_reason = self.stop_reason or reason

    async def save(
        self,
        checkpoint: dict[str, Any] | None = None,
        *,
        done: int | None = None,
        total: int | None = None,
        message: str | None = None,
    ) -> None:
        progress = dict(self.job.progress)
        for key, value in (("done", done), ("total", total), ("message", message)):
            if value is not None:
                progress[key] = value
        keep = self.job.checkpoint if checkpoint is None else checkpoint
        job = await self._write(
            lambda j: j.but(checkpoint=keep, progress=progress, lease_until=time.time() + self.lease_seconds)
        )
        if job.cancel_requested:
            self.stop("cancel")
        elif job.pause_requested:
            self.stop("pause")
        if self.stop_reason is not None:
            raise JobCancelled(self.stop_reason)

    async def renew(self) -> None:
        """Extend the lease (the heartbeat does this; long single steps need not)."""
        job = await self._write(lambda j: j.but(lease_until=time.time() + self.lease_seconds))
        if job.cancel_requested:
            self.stop("cancel")
        elif job.pause_requested:
            self.stop("pause")

    async def _write(self, change: Any) -> Job:
        async with self._lock:
            while True:
                new = change(Job.from_record(self._raw))
                if await self.store.kv_compare_and_set(NAMESPACE, self.id, self._raw, new.record()):
                    self._raw, self.job = new.record(), new
                    return new
                fresh = await self.store.kv_get(NAMESPACE, self.id)
                current = Job.from_record(fresh) if fresh is not None else None
                if current is None or current.lease_holder != self.holder or current.state != "running":
                    self.stop("lease-lost")
                    raise JobCancelled("lease-lost")
                self._raw, self.job = fresh, current  # someone set a flag: apply ours on top

    async def end(self, state: str, **changes: Any) -> None:
        """Record how the run ended (not after losing the lease: the job is someone else's then)."""
        if self.stop_reason == "lease-lost":
            return
        with contextlib.suppress(JobCancelled):
            await self._write(lambda j: records.finished(j, state, **changes))

    async def release(self, state: str) -> None:
        """Give the job back: ``queued`` (shutdown; resumed by whoever starts next) or ``paused``."""
        if self.stop_reason == "lease-lost":
            return

        def change(j: Job) -> Job:
            attempts = j.attempts - 1 if state == "queued" else j.attempts  # a clean stop is no failed try
            return j.but(
                state=state,
                lease_holder=None,
                lease_until=0.0,
                attempts=max(attempts, 0),
                pause_requested=False,
            )

        try:
            await self._write(change)
        except Exception:  # best effort: if it fails, the lease runs out and the job is resumed anyway
            log.warning("could not give job %s back", self.id, exc_info=True)


# kind -> state -> jobs this process ran (running now, or how they ended here): for the metrics.
_local_counts: dict[str, dict[str, int]] = {}
_COUNTED_STATES = ("running", "finished", "failed", "cancelled")


def local_counts(kind: str) -> dict[str, int]:
    """Jobs of ``kind`` run by this process, by state (``running``, ``finished``, ``failed``,
    ``cancelled``; a job given back at shutdown counts in none of the ended states)."""
    counts = _local_counts.get(kind, {})
    return {state: counts.get(state, 0) for state in _COUNTED_STATES}


def _count(kind: str, state: str, step: int) -> None:
    counts = _local_counts.setdefault(kind, {})
    counts[state] = counts.get(state, 0) + step


async def execute(handle: JobHandle) -> Job:
    """Run a claimed job to its end (completed, failed, cancelled) or until it must stop."""
    kind = kinds.get(handle.job.kind)
    assert kind is not None
    heartbeat = asyncio.get_running_loop().create_task(_heartbeat(handle))
    _count(kind.name, "running", 1)
    try:
        try:
            result = await kind.run(handle, handle.job.checkpoint)
        except (JobCancelled, asyncio.CancelledError) as stop:
            reason = handle.stop_reason or (
                "shutdown" if isinstance(stop, asyncio.CancelledError) else "cancel"
            )
            handle.stop(reason)
            if reason == "cancel":
                await _cancelled(handle.store, handle.job, kind)
                await handle.end("cancelled")
            elif reason == "pause":
                await handle.release("paused")
            elif reason == "shutdown":
                await handle.release("queued")
            if isinstance(stop, asyncio.CancelledError) and reason == "shutdown":
                raise
        except Exception as exc:  # a failing job must not take the runner down
            log.exception("job %s (%s) failed", handle.id, handle.job.kind)
            await handle.end("failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        else:
            await handle.end("completed", result=result)
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        _count(kind.name, "running", -1)
        ended = {"completed": "finished", "failed": "failed", "cancelled": "cancelled"}
        if handle.job.state in ended:
            _count(kind.name, ended[handle.job.state], 1)
    return handle.job


async def _heartbeat(handle: JobHandle) -> None:
    while True:
        await asyncio.sleep(handle.lease_seconds / 3)
        try:
            await handle.renew()
        except JobCancelled:
            return
        except Exception:  # the store hiccuped: try again at the next beat, the lease has slack
            log.warning("could not renew the lease of job %s", handle.id, exc_info=True)


async def _cancelled(store: Any, job: Job, kind: kinds.JobKind) -> None:
    if kind.on_cancel is not None:
        try:
            await kind.on_cancel(store, job)
        except Exception:
            log.exception("cleaning up cancelled job %s failed", job.id)


async def claim(store: Any, job_id: str, holder: str, lease_seconds: float) -> JobHandle | None:
    """Take the job if nobody runs it (queued, or running with an expired lease); None otherwise.

    A job asked to cancel while nobody ran it is cancelled here instead; one that died too often fails.
    """
    while True:
        raw = await store.kv_get(NAMESPACE, job_id)
        if raw is None:
            return None
        job = Job.from_record(raw)
        now = time.time()
        if not (job.state == "queued" or (job.state == "running" and job.lease_expired(now))):
            return None
        kind = kinds.get(job.kind)
        if kind is None:
            return None  # a kind this process does not know (another version): leave it to others
        if job.cancel_requested or job.attempts >= kind.max_attempts:
            cancel = job.cancel_requested
            error = None if cancel else f"gave up after {job.attempts} runs that did not finish"
            new = records.finished(job, "cancelled" if cancel else "failed", error=error)
            if await store.kv_compare_and_set(NAMESPACE, job_id, raw, new.record()):
                if cancel:
                    await _cancelled(store, new, kind)
                return None
            continue
        new = job.but(
            state="running", lease_holder=holder, lease_until=now + lease_seconds, attempts=job.attempts + 1
        )
        if await store.kv_compare_and_set(NAMESPACE, job_id, raw, new.record()):
            return JobHandle(store, new.record(), holder, lease_seconds)


class JobRunner:
    """Runs the store's jobs in this process (see the module docstring)."""

    def __init__(
        self,
        store: Any,
        *,
        concurrency: int = 2,
        lease_seconds: float = 30.0,
        poll_seconds: float = 2.0,
        holder: str | None = None,
    ) -> None:
        self.store = store
        self.concurrency = max(1, concurrency)
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.holder = holder or _holder_name()
        self._wake = asyncio.Event()
        self._running: dict[str, tuple[JobHandle, asyncio.Task[Job]]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    @property
    def running(self) -> list[str]:
        return sorted(self._running)

    async def start(self) -> None:
        self._stopping = False
        records.attach(self)
        self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Shutdown: running jobs stop where they are and go back to the queue (they resume later)."""
        records.detach(self)
        self._stopping = True
        self.wake()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        running = list(self._running.values())
        for handle, task in running:
            handle.stop("shutdown")
            task.cancel()
        for _, task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._running.clear()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job runner poll failed")
            self._wake.clear()
            # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
            # arrives as the event is set, and the runner would never stop.
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=self.poll_seconds)
            finally:
                waiter.cancel()

    async def poll(self) -> list[str]:
        """One look at the store: pass on stop requests, expire old jobs, start what can start."""
        jobs = sorted(await records.list_jobs(self.store), key=lambda j: j.created)
        now = time.time()
        started: list[str] = []
        for job in jobs:
            local = self._running.get(job.id)
            if local is not None:
                if job.cancel_requested:
                    local[0].stop("cancel")
                elif job.pause_requested:
                    local[0].stop("pause")
                continue
            if job.state in FINISHED and job.expires is not None and job.expires <= now:
                await self._expire(job)
                continue
            if len(self._running) >= self.concurrency:
                continue
            if job.state == "queued" or (job.state == "running" and job.lease_expired(now)):
                handle = await claim(self.store, job.id, self.holder, self.lease_seconds)
                if handle is not None:
                    self._start(handle)
                    started.append(job.id)
        return started

    def _start(self, handle: JobHandle) -> None:
        task = asyncio.get_running_loop().create_task(execute(handle))
        self._running[handle.id] = (handle, task)

        def done(_: asyncio.Task[Job]) -> None:
            self._running.pop(handle.id, None)
            self.wake()  # a slot is free

        task.add_done_callback(done)

    async def _expire(self, job: Job) -> None:
        kind = kinds.get(job.kind)
        try:
            if kind is not None and kind.on_expire is not None:
                await kind.on_expire(self.store, job)
            await records.remove(self.store, job.id)
        except Exception:
            log.exception("expiring job %s failed", job.id)


async def run_now(
    store: Any, job_id: str, *, lease_seconds: float = 30.0, timeout: float | None = None
) -> Job:
    """Run a job in the caller's task (scripts, ``wait=true``); if another runner holds it, wait for it.

    Returns the job as it ended. ``TimeoutError`` when ``timeout`` passes first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        handle = await claim(store, job_id, _holder_name(), lease_seconds)
        if handle is not None:
            return await execute(handle)
        job = await records.get(store, job_id)
        if job is None:
            raise KeyError(job_id)
        if job.state in FINISHED or job.state == "paused":
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
        await asyncio.sleep(0.05)


async def wait_for(store: Any, job_ids: list[str], timeout: float) -> list[Job]:
    """Wait up to ``timeout`` seconds for these jobs to end (whoever runs them); returns their records."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = [j for i in job_ids if (j := await records.get(store, i)) is not None]
        if all(j.state in FINISHED for j in jobs) or time.monotonic() >= deadline:
            return jobs
        await asyncio.sleep(0.05)
