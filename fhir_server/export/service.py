"""The Bulk Data flow as plain async functions: kick-off, status, cancel and file lookup.

The HTTP layer (``operations/export.py`` for the kick-off, ``api/export.py`` for the status and file
URLs) only translates; the CLI calls the same functions for in-process exports.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_server import jobs
from fhir_server.config import Settings
from fhir_server.export import cohort
from fhir_server.export.caller import Caller, from_principal, readable, restriction
from fhir_server.export.files import downloadable, job_folder, remove_folder
from fhir_server.export.job import KIND, export_types
from fhir_server.export.request import ExportRequest, Level, parse_request
from fhir_server.interactions.errors import FhirError
from fhir_server.jobs.model import now_instant
from fhir_server.security import access as acc

STATUS_SEGMENT = "_export"
_last_poll: dict[str, float] = {}


def raw_store(store: Any) -> Any:
    """The store under a request's secured view: the export applies the caller's restriction itself."""
    return getattr(store, "_inner", store)


@dataclass
class KickOff:
    job_id: str
    status_url: str


async def kick_off(
    *,
    store: Any,
    settings: Settings,
    base_url: str,
    parameters: dict[str, Any],
    level: Level,
    group_id: str | None,
    prefer: dict[str, str],
    principal: Any,
    purpose: str | None,
    request_url: str,
    folder: Path | None = None,
    project: str | None = None,
    consents: Any = None,
) -> KickOff:
    """Check the request and start the export job; raises ``FhirError`` with the right status.

    ``folder`` and ``project`` are for in-process exports by the operator (``termtem export --store``):
    where the files go, and whose pseudonyms a de-identified export uses. ``consents`` is the server
    process's consent cache, when there is one (the job reads consents afresh when it starts).
    """
    if "respond-async" not in prefer:
        raise FhirError(
            400,
            "$export runs asynchronously: send the header 'Prefer: respond-async'",
            code="invalid",
            expression=["Prefer"],
        )
    lenient = prefer.get("handling") == "lenient"
    store = raw_store(store)
    request = parse_request(parameters, level, group_id, lenient=lenient, base_url=base_url)
    caller = await from_principal(store, principal, purpose)
    deidentify = _deidentify(request, caller)
    access, _ = await restriction(store, caller, deidentify, consents)
    _check_types(request, access, deidentify, lenient)
    if level == "group":
        stored = await store.read("Group", str(group_id))
        if stored is None or stored.deleted or not acc.visible(access, "Group", stored.body):
            raise FhirError(404, f"Group/{group_id} is not known", code="not-found")
        import orjson

        cohort.check_group(orjson.loads(stored.body), base_url)
    if request.patients:
        seen = await cohort.visible_patients(store, set(request.patients), access)
        missing = sorted(set(request.patients) - seen)
        if missing:
            message = f"patient: {', '.join('Patient/' + m for m in missing[:10])} not known"
            if not lenient:
                raise FhirError(404, message, code="not-found", expression=["patient"])
            request.notes.append(message + ": left out")
            request.patients = sorted(seen)
    await _check_capacity(store, settings)
    job_id = uuid.uuid4().hex
    folder = folder or job_folder(settings.export_path().resolve(), job_id)
    project = f"operator|{project}" if project else _project(caller)
    params = {
        "request": request.record(),
        "caller": caller.record() if caller is not None else None,
        "deidentify": deidentify,
        "folder": str(folder),
        "base_url": base_url,
        "request_url": request_url,
        "transaction_time": now_instant(),
        "file_max_bytes": settings.export_file_max_bytes,
        "page_bytes": settings.export_page_bytes,
        "processes": settings.export_processes,
        "k": settings.export_k,
        "project": project,
        "project_label": project.split("|", 1)[-1],
        "keep_seconds": settings.export_expire_seconds,
    }
    await jobs.submit(store, KIND, params, owner=caller.client_id if caller else None, job_id=job_id)
    return KickOff(job_id, f"{base_url}/{STATUS_SEGMENT}/{job_id}")


def _deidentify(request: ExportRequest, caller: Caller | None) -> bool:
    if caller is not None and caller.researcher:
        if request.deidentify is False:
            raise FhirError(
                403,
                "Researchers receive de-identified data only (deidentify=false is refused)",
                code="forbidden",
                expression=["deidentify"],
            )
        return True
    return bool(request.deidentify)


def _check_types(request: ExportRequest, access: Any, deidentify: bool, lenient: bool) -> None:
    if request.types is None:
        return
    for rtype in request.types:
        if not readable(access, rtype):
            raise FhirError(
                403,
                f"This client may not read {rtype}, so it cannot export it",
                code="forbidden",
                expression=["_type"],
            )
    allowed = export_types(request, access, deidentify)
    for rtype in [t for t in request.types if t not in allowed]:
        message = f"_type {rtype} is not part of a de-identified export (only the children's own data is)"
        if not lenient:
            raise FhirError(400, message, code="not-supported", expression=["_type"])
        request.notes.append(message + ": left out")
    request.types = [t for t in request.types if t in allowed]
    if not request.types:
        raise FhirError(400, "_type leaves nothing this client may export", expression=["_type"])


def _project(caller: Caller | None) -> str:
    """The research project whose pseudonyms this export uses: server-held, from the client registry.

    A client's registered project (``termtem client add --project``) or else its agency: every
    client of one project shares pseudonyms, two projects never do.
    """
    if caller is None:
        return "local|local"
    return f"{caller.organization}|{caller.project or caller.organization}"


async def _check_capacity(store: Any, settings: Settings) -> None:
    running = [j for j in await jobs.list_jobs(store, kind=KIND) if j.active]
    if len(running) >= settings.export_max_running:
        raise FhirError(
            429,
            f"{len(running)} exports are running, the most this server runs at once; try again later",
            code="throttled",
            headers={"Retry-After": str(max(settings.export_retry_after * 5, 10))},
        )


async def owned_job(store: Any, job_id: str, client_id: str | None) -> jobs.Job:
    """The export job ``job_id`` if the caller started it; 404 otherwise (another client's job is
    answered exactly like one that does not exist)."""
    try:
        job_folder(Path("/"), job_id)
    except ValueError:
        raise FhirError(404, f"No export '{job_id[:64]}'", code="not-found") from None
    job = await jobs.get(raw_store(store), job_id)
    gone = job is not None and (job.state == "cancelled" or job.cancel_requested)  # DELETEd
    if job is None or job.kind != KIND or job.owner != client_id or gone:
        raise FhirError(404, f"No export '{job_id}'", code="not-found")
    return job


@dataclass
class Status:
    done: bool
    manifest: dict[str, Any] | None = None
    progress: str = ""
    expires: float | None = None


async def status(store: Any, settings: Settings, job_id: str, client_id: str | None) -> Status:
    """Where an export is; 429 when polled faster than Retry-After allows, an error when it failed."""
    job = await owned_job(store, job_id, client_id)
    now = time.monotonic()
    last = _last_poll.get(job_id)
    retry = settings.export_retry_after
    if job.state != "completed" and last is not None and now - last < retry / 2:
        raise FhirError(
            429,
            f"Polled too often: wait {retry} s between status requests (Retry-After)",
            code="throttled",
            headers={"Retry-After": str(retry)},
        )
    _last_poll[job_id] = now
    if len(_last_poll) > 10_000:
        _last_poll.clear()
    if job.state == "failed":
        raise FhirError(500, f"The export failed: {job.error}", code="exception")
    if job.state == "completed":
        result = job.result or {}
        refused = result.get("refused")
        if refused:
            issue = (refused["outcome"].get("issue") or [{}])[0]
            raise FhirError(
                int(refused["status"]),
                str(issue.get("diagnostics", "The export was refused")),
                code=str(issue.get("code", "forbidden")),
            )
        return Status(True, manifest=result["manifest"], expires=job.expires)
    progress = job.progress.get("message") or {"queued": "queued", "paused": "paused"}.get(
        job.state, "planning"
    )
    return Status(False, progress=str(progress))


async def cancel(store: Any, job_id: str, client_id: str | None) -> None:
    """DELETE on the status URL: stop a running export, or remove a finished one's files."""
    job = await owned_job(store, job_id, client_id)
    store = raw_store(store)
    if job.active:
        await jobs.cancel(store, job_id)
        return
    folder = job.params.get("folder")
    if folder:
        remove_folder(Path(folder))
    await jobs.remove(store, job_id)


async def file_path(store: Any, job_id: str, name: str, client_id: str | None) -> Path:
    """The file ``name`` of a completed export of this client (404 for anything else)."""
    job = await owned_job(store, job_id, client_id)
    manifest = (job.result or {}).get("manifest") if job.state == "completed" else None
    listed = {
        entry["url"].rsplit("/", 1)[-1]
        for part in ("output", "deleted", "error")
        for entry in (manifest or {}).get(part, [])
    }
    path = downloadable(Path(job.params["folder"]), name) if name in listed else None
    if path is None:
        raise FhirError(404, f"Export {job_id} has no file '{name[:100]}'", code="not-found")
    return path
