"""``$reindex``: index existing resources for new custom SearchParameters, and report progress.

``POST [base]/$reindex`` (or ``[type]/$reindex``) starts a job for the given ``url`` parameters (default:
every parameter still waiting) and returns its progress; ``job=<id>`` reads a job's progress;
``wait=true`` runs the job to completion before answering (for scripts and tests).
"""

from __future__ import annotations

from typing import Any

from fhir_server import definitions, jobs
from fhir_server.interactions.errors import FhirError
from fhir_server.operations.registry import (
    OperationRequest,
    OperationResult,
    parameter_value,
    parameter_values,
)
from fhir_server.search import registry, reindex


def _parameters(job: jobs.Job) -> dict[str, Any]:
    types: list[str] = job.params["types"]
    checkpoint = job.checkpoint or {}
    done = len(types) if job.state == "completed" else min(checkpoint.get("typeIndex", 0), len(types))
    processed = (job.result or {}).get("processed", checkpoint.get("processed", 0))
    params: list[dict[str, Any]] = [
        {"name": "jobId", "valueString": job.id},
        {"name": "status", "valueCode": job.state},
        {"name": "processed", "valueInteger": processed},
        {"name": "typesDone", "valueInteger": done},
        {"name": "typesTotal", "valueInteger": len(types)},
    ]
    if job.error:
        params.append({"name": "error", "valueString": job.error})
    params.extend({"name": "url", "valueUri": u} for u in job.params["urls"])
    params.extend({"name": "type", "valueCode": t} for t in types)
    return {"resourceType": "Parameters", "parameter": params}


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


async def run(request: OperationRequest) -> OperationResult:
    store = request.context.store
    guard = getattr(store, "guard", None)  # auth on: reindexing touches every resource of a type
    if guard is not None and not guard.unrestricted():
        raise guard.forbid("$reindex needs a client that may see every resource (role admin)")
    job_id = parameter_value(request.parameters, "job")
    if job_id:
        job = await reindex.status(store, str(job_id))
        if job is None:
            raise FhirError(404, f"No $reindex job '{job_id}'", code="not-found")
        return OperationResult(_parameters(job))
    if request.method != "POST":
        raise FhirError(
            405,
            "$reindex starts work: use POST (GET only reads a job's progress with job=)",
            code="not-supported",
        )
    from fhir_server.search import sync

    await sync.refresh(store)  # parameters written through another server process count too
    urls = [str(u) for u in parameter_values(request.parameters, "url")]
    for url in urls:
        if registry.definition(url) is None:
            raise FhirError(400, f"Unknown SearchParameter '{url}'", expression=["Parameters.parameter.url"])
    types = [str(t) for t in parameter_values(request.parameters, "type")]
    if request.resource_type:
        types = [request.resource_type]
    unknown = [t for t in types if not definitions.is_resource_type(t)]
    if unknown:
        raise FhirError(400, f"Unknown resource types {unknown}", expression=["Parameters.parameter.type"])
    if not urls and not types and not registry.pending_urls():
        raise FhirError(
            400,
            "Nothing to reindex: no search parameter is waiting; name a url or a type",
            code="informational",
        )
    owner = request.context.principal.client_id if request.context.principal is not None else None
    job = await reindex.create_job(store, urls or None, types or None, owner=owner)
    if job.state in ("failed", "cancelled"):  # the same work asked for again: try once more
        await jobs.remove(store, job.id)
        job = await reindex.create_job(store, urls or None, types or None, owner=owner)
    if _flag(parameter_value(request.parameters, "wait")):
        job = await jobs.run_now(store, job.id)
        return OperationResult(_parameters(job))
    return OperationResult(_parameters(job), status=200 if job.state == "completed" else 202)
