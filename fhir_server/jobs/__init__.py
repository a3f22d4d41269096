"""The one background job runner: exports, reindexing, record linkage, deliveries, refreshes.

A job is a record in the store's key/value area (namespace ``jobs``): its kind, state
(queued, running, paused, completed, failed, cancelled), owner (client id), parameters, progress,
checkpoint, result and times. A ``JobRunner`` in every server process (started in the app lifespan)
claims queued jobs with an atomic compare-and-set that writes a lease, runs a configurable number at
once (``TERMTEM_JOB_WORKERS``), renews the lease while a job runs, and gives jobs back when the server
stops. A job whose process died is claimed again once its lease expires (``TERMTEM_JOB_LEASE``
seconds) and resumes from its last checkpoint, also in another process sharing the store.

Adding a job kind
-----------------
Write an async function that does the work from a checkpoint, saving progress as it goes, and
register it under a name in a module listed in ``kinds.BUILTIN_MODULES`` (so a restarted server can
resume such jobs before anything else imported the module)::

    from fhir_server import jobs

    async def run(job: jobs.JobHandle, checkpoint: dict | None) -> dict:
        position = (checkpoint or {}).get("position", 0)   # None: a fresh start
        items = await load_work(job.store, job.params)
        for n, item in enumerate(items[position:], start=position + 1):
            await do_one(job.store, item)
            if n % 500 == 0:
                # Persists the checkpoint and renews the lease; raises JobCancelled when the job was
                # cancelled or paused or the server stops: let it propagate.
                await job.save({"position": n}, done=n, total=len(items))
        return {"processed": len(items)}              # stored as the job's result

    jobs.register(jobs.JobKind("my-kind", run, keep_seconds=7 * 86400))

Then start work from anywhere that holds the store (an operation, the CLI, another job)::

    job = await jobs.submit(store, "my-kind", {"what": "..."}, owner=client_id)
    ...
    job = await jobs.get(store, job.id)        # state, progress, result, error
    await jobs.cancel(store, job.id)

Rules for a kind: make each step idempotent from its checkpoint (a crash repeats the work since the
last ``save``); keep the checkpoint small (it is rewritten on every save: put bulky state in files or
resources and name them in it); yield to the event loop (``await``) often, and push CPU-heavy batches to
a thread (``asyncio.to_thread``) so interactive requests stay fast; give ``on_cancel`` to remove partial
output and ``on_expire`` to remove a finished job's output once ``keep_seconds`` have passed.
``run_now`` runs a job in the caller's task (scripts, tests, ``wait=true``).
"""

from fhir_server.jobs.kinds import JobKind, register
from fhir_server.jobs.model import ACTIVE, FINISHED, Job, JobCancelled
from fhir_server.jobs.records import cancel, get, list_jobs, pause, remove, resume, submit
from fhir_server.jobs.runner import JobHandle, JobRunner, run_now, wait_for

__all__ = [
    "ACTIVE",
    "FINISHED",
    "Job",
    "JobCancelled",
    "JobHandle",
    "JobKind",
    "JobRunner",
    "cancel",
    "get",
    "list_jobs",
    "pause",
    "register",
    "remove",
    "resume",
    "run_now",
    "submit",
    "wait_for",
]
