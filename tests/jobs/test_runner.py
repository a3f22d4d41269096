"""The shared job runner: claims, leases, checkpoints, restarts, cancellation, on both backends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server import jobs
from fhir_server.jobs import kinds
from fhir_server.storage.base import Store
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.sqlite.store import SqliteStore
from tests.storage.conftest import dispose

# What the test kinds did, by job id: (step, runner holder) per executed step.
STEPS: dict[str, list[tuple[int, str]]] = {}
CLEANED: list[tuple[str, str]] = []
RUNNING: set[str] = set()
PEAK = [0]


async def _counting(job: jobs.JobHandle, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """Counts to params.n, one step per ``params.delay`` seconds, checkpointing every step."""
    n = (checkpoint or {}).get("n", 0)
    RUNNING.add(job.id)
    PEAK[0] = max(PEAK[0], len(RUNNING))
    try:
        while n < job.params["n"]:
            await asyncio.sleep(job.params.get("delay", 0))
            n += 1
            STEPS.setdefault(job.id, []).append((n, job.holder))
            await job.save({"n": n}, done=n, total=job.params["n"])
        if job.params.get("fail"):
            raise ValueError("bad input in the job")
        return {"counted": n}
    finally:
        RUNNING.discard(job.id)


async def _cleanup(store: Any, job: jobs.Job) -> None:
    CLEANED.append(("cancel", job.id))


async def _expire(store: Any, job: jobs.Job) -> None:
    CLEANED.append(("expire", job.id))


@pytest.fixture(autouse=True)
def _kinds() -> Any:
    STEPS.clear()
    CLEANED.clear()
    PEAK[0] = 0
    jobs.register(
        jobs.JobKind("test-count", _counting, on_cancel=_cleanup, on_expire=_expire, keep_seconds=3600)
    )
    jobs.register(jobs.JobKind("test-short-lived", _counting, on_expire=_expire, keep_seconds=0.0))
    yield
    kinds._KINDS.pop("test-count", None)
    kinds._KINDS.pop("test-short-lived", None)


def _pair(tmp_path: Path, backend: str) -> tuple[Store, Store]:
    """Two stores on the same data, as two server processes would have."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
        return SqliteStore(url), SqliteStore(url)
    url = f"mongomock://jobs-{uuid.uuid4().hex}/termtem"
    return MongoStore(url), MongoStore(url)


@pytest.fixture(params=["sqlite", "mongo-double"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    first, second = _pair(tmp_path, request.param)
    await first.open()
    await second.open()
    yield first, second
    await second.close() if isinstance(second, SqliteStore) else None
    await dispose(first)


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _state(store: Store, job_id: str) -> str:
    job = await jobs.get(store, job_id)
    assert job is not None
    return job.state


async def test_a_submitted_job_runs_to_completion(stores: tuple[Store, Store]) -> None:
    store, _ = stores
    runner = jobs.JobRunner(store, poll_seconds=5)
    await runner.start()
    try:
        job = await jobs.submit(store, "test-count", {"n": 3}, owner="client-a")
        assert job.state == "queued" and job.owner == "client-a"
        await _until(lambda: _is(store, job.id, "completed"))  # woken at once, not after the 5 s poll
        done = await jobs.get(store, job.id)
        assert done is not None
        assert done.result == {"counted": 3} and done.progress == {"done": 3, "total": 3}
        assert done.lease_holder is None and done.finished and done.expires is not None
        assert [s for s, _ in STEPS[job.id]] == [1, 2, 3]
    finally:
        await runner.stop()


async def _is(store: Store, job_id: str, state: str) -> bool:
    return await _state(store, job_id) == state


async def test_shutdown_gives_jobs_back_and_a_restart_resumes_from_the_checkpoint(
    stores: tuple[Store, Store],
) -> None:
    store, _ = stores
    runner = jobs.JobRunner(store, poll_seconds=0.05)
    await runner.start()
    job = await jobs.submit(store, "test-count", {"n": 40, "delay": 0.02})
    await _until(lambda: _steps(job.id, 5))
    await runner.stop()
    stopped = await jobs.get(store, job.id)
    assert stopped is not None and stopped.state == "queued" and stopped.lease_holder is None
    reached = stopped.checkpoint["n"] if stopped.checkpoint else 0
    # the step in flight when it stopped may not have been saved
    assert reached >= 4 and stopped.attempts == 0  # a clean stop is not a failed attempt
    restarted = jobs.JobRunner(store, poll_seconds=0.05)
    await restarted.start()
    try:
        await _until(lambda: _is(store, job.id, "completed"))
    finally:
        await restarted.stop()
    counted = [s for s, _ in STEPS[job.id]]
    # every step ran once, except at most the one in flight when the server stopped
    assert counted[reached:] == list(range(reached + 1, 41)) or counted[reached + 1 :] == list(
        range(reached + 1, 41)
    )
    assert len(counted) <= 41


async def _steps(job_id: str, n: int) -> bool:
    return len(STEPS.get(job_id, [])) >= n


async def test_two_processes_never_run_the_same_job(stores: tuple[Store, Store]) -> None:
    first, second = stores
    a = jobs.JobRunner(first, concurrency=3, poll_seconds=0.01, holder="process-a")
    b = jobs.JobRunner(second, concurrency=3, poll_seconds=0.01, holder="process-b")
    ids = [(await jobs.submit(first, "test-count", {"n": 3, "delay": 0.01})).id for _ in range(8)]
    await asyncio.gather(a.start(), b.start())
    try:
        for job_id in ids:
            await _until(lambda job_id=job_id: _is(first, job_id, "completed"))
    finally:
        await asyncio.gather(a.stop(), b.stop())
    for job_id in ids:
        steps = STEPS[job_id]
        assert [s for s, _ in steps] == [1, 2, 3]  # each step exactly once
        assert len({holder for _, holder in steps}) == 1  # by one runner
    assert {holder for job_id in ids for _, holder in STEPS[job_id]} == {"process-a", "process-b"}


async def test_a_dead_process_job_is_taken_over_after_its_lease(stores: tuple[Store, Store]) -> None:
    first, second = stores
    job = await jobs.submit(first, "test-count", {"n": 4})
    handle = await jobs.runner.claim(first, job.id, "dead-process", lease_seconds=0.3)
    assert handle is not None
    await handle.save({"n": 2}, done=2)  # it got half way, then the process died
    survivor = jobs.JobRunner(second, poll_seconds=0.05, holder="survivor")
    assert await survivor.poll() == []  # the lease still holds
    await asyncio.sleep(0.35)
    await survivor.start()
    try:
        await _until(lambda: _is(second, job.id, "completed"))
    finally:
        await survivor.stop()
    assert STEPS[job.id] == [(3, "survivor"), (4, "survivor")]
    done = await jobs.get(second, job.id)
    assert done is not None and done.attempts == 2
    # the dead runner's late save is refused: the job is not its own any more
    with pytest.raises(jobs.JobCancelled):
        await handle.save({"n": 3})


async def test_cancel_running_and_queued_jobs(stores: tuple[Store, Store]) -> None:
    store, other = stores
    runner = jobs.JobRunner(store, concurrency=1, poll_seconds=0.05)
    await runner.start()
    try:
        running = await jobs.submit(store, "test-count", {"n": 500, "delay": 0.01})
        await _until(lambda: _steps(running.id, 2))
        queued = await jobs.submit(store, "test-count", {"n": 1})  # waits: the one slot is taken
        # cancelled through the other "process": the runner stops the job at its next checkpoint
        assert (await jobs.cancel(other, queued.id)).state == "cancelled"  # type: ignore[union-attr]
        asked = await jobs.cancel(other, running.id)
        assert asked is not None and asked.cancel_requested
        await _until(lambda: _is(store, running.id, "cancelled"))
        assert ("cancel", running.id) in CLEANED and ("cancel", queued.id) in CLEANED
        assert queued.id not in STEPS
        assert len(STEPS[running.id]) < 500
        # a finished job is not cancelled again
        assert (await jobs.cancel(store, running.id)).state == "cancelled"  # type: ignore[union-attr]
        assert CLEANED.count(("cancel", running.id)) == 1
    finally:
        await runner.stop()


async def test_concurrency_limit_failures_and_attempts(stores: tuple[Store, Store]) -> None:
    store, _ = stores
    runner = jobs.JobRunner(store, concurrency=2, poll_seconds=0.02)
    ids = [(await jobs.submit(store, "test-count", {"n": 3, "delay": 0.02})).id for _ in range(5)]
    failing = await jobs.submit(store, "test-count", {"n": 1, "fail": True})
    await runner.start()
    try:
        for job_id in [*ids, failing.id]:
            await _until(lambda job_id=job_id: _finished(store, job_id))
    finally:
        await runner.stop()
    assert PEAK[0] == 2
    failed = await jobs.get(store, failing.id)
    assert failed is not None and failed.state == "failed" and "bad input in the job" in (failed.error or "")
    # a job whose runs keep dying is given up after max_attempts
    doomed = await jobs.submit(store, "test-count", {"n": 1})
    for _ in range(5):
        assert await jobs.runner.claim(store, doomed.id, "x", lease_seconds=0.0) is not None
    assert await jobs.runner.claim(store, doomed.id, "x", lease_seconds=0.0) is None
    given_up = await jobs.get(store, doomed.id)
    assert given_up is not None and given_up.state == "failed" and "5 runs" in (given_up.error or "")


async def _finished(store: Store, job_id: str) -> bool:
    return await _state(store, job_id) in jobs.FINISHED


async def test_pause_resume_and_expiry(stores: tuple[Store, Store]) -> None:
    store, _ = stores
    runner = jobs.JobRunner(store, poll_seconds=0.02)
    await runner.start()
    try:
        job = await jobs.submit(store, "test-count", {"n": 30, "delay": 0.01})
        await _until(lambda: _steps(job.id, 3))
        await jobs.pause(store, job.id)
        await _until(lambda: _is(store, job.id, "paused"))
        paused_at = len(STEPS[job.id])
        await asyncio.sleep(0.1)
        assert len(STEPS[job.id]) == paused_at  # it stays paused
        await jobs.resume(store, job.id)
        await _until(lambda: _is(store, job.id, "completed"))
        assert [s for s, _ in STEPS[job.id]][-1] == 30
        # finished jobs of a short-lived kind are removed (with their output) once they expire
        short = await jobs.submit(store, "test-short-lived", {"n": 1})
        await _until(lambda: _gone(store, short.id))
        assert ("expire", short.id) in CLEANED
        assert await jobs.get(store, job.id) is not None  # kept for its hour
    finally:
        await runner.stop()


async def _gone(store: Store, job_id: str) -> bool:
    return await jobs.get(store, job_id) is None


async def test_submit_with_an_id_is_idempotent_and_unknown_kinds_are_refused(
    stores: tuple[Store, Store],
) -> None:
    store, _ = stores
    first = await jobs.submit(store, "test-count", {"n": 1}, job_id="same")
    again = await jobs.submit(store, "test-count", {"n": 99}, job_id="same")
    assert again.params == {"n": 1} and again.created == first.created
    with pytest.raises(ValueError, match="unknown job kind"):
        await jobs.submit(store, "no-such-kind", {})
    with pytest.raises(ValueError, match="still queued"):
        await jobs.remove(store, "same")
