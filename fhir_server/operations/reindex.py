"""``$reindex``: index existing resources for new custom SearchParameters, and report progress.

``POST [base]/$reindex`` (or ``[type]/$reindex``) starts a job for the given ``url`` parameters (default:
every parameter still waiting) and returns its progress; ``job=<id>`` reads a job's progress;
``wait=true`` runs the job to completion before answering (for scripts and tests).
"""

from __future__ import annotations

from typing import Any

from fhir_server import definitions
from fhir_server.interactions.errors import FhirError
from fhir_server.operations.registry import (
    OperationRequest,
    OperationResult,
    parameter_value,
    parameter_values,
)
from fhir_server.search import registry, reindex


def _parameters(job: dict[str, Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "jobId", "valueString": job["id"]},
        {"name": "status", "valueCode": job["status"]},
        {"name": "processed", "valueInteger": job["processed"]},
        {"name": "typesDone", "valueInteger": min(job["typeIndex"], len(job["types"]))},
        {"name": "typesTotal", "valueInteger": len(job["types"])},
    ]
    params.extend({"name": "url", "valueUri": u} for u in job["urls"])
    params.extend({"name": "type", "valueCode": t} for t in job["types"])
    return {"resourceType": "Parameters", "parameter": params}


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


async def run(request: OperationRequest) -> OperationResult:
    store = request.context.store
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
    job = await reindex.create_job(store, urls or None, types or None)
    if _flag(parameter_value(request.parameters, "wait")):
        job = await reindex.run_job(store, job["id"])
        return OperationResult(_parameters(job))
    if job["status"] != "complete":
        reindex.start_job(store, job["id"])
    return OperationResult(_parameters(job), status=202 if job["status"] != "complete" else 200)
