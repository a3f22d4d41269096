"""The identity operations: ``Patient/$match`` and the data steward's tools (``fhir_server.identity``)."""

from __future__ import annotations

from typing import Any

from fhir_server.identity import job, steward
from fhir_server.identity import match as matching
from fhir_server.interactions.errors import FhirError
from fhir_server.operations.registry import OperationRequest, OperationResult, parameter_values


def _one(parameters: dict[str, Any], name: str) -> Any:
    values = parameter_values(parameters, name)
    if len(values) > 1:
        raise FhirError(400, f"The parameter '{name}' may be given once", expression=[name])
    return values[0] if values else None


def _boolean(parameters: dict[str, Any], name: str) -> bool:
    value = _one(parameters, name)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise FhirError(400, f"'{name}' must be true or false", expression=[name])


def _integer(parameters: dict[str, Any], name: str) -> int | None:
    value = _one(parameters, name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise FhirError(400, f"'{name}' must be a whole number", expression=[name])


async def match(request: OperationRequest) -> OperationResult:
    """``Patient/$match`` (FHIR R4): ``resource``, ``onlyCertainMatches``, ``count``."""
    patient = _one(request.parameters, "resource")
    if patient is None and request.body_resource is not None:
        patient = request.body_resource
    bundle = await matching.match(
        request.context,
        patient,
        only_certain=_boolean(request.parameters, "onlyCertainMatches"),
        count=_integer(request.parameters, "count"),
    )
    return OperationResult(bundle)


# --- data steward tools ------------------------------------------------------------------------------


def _steward(request: OperationRequest) -> str:
    """The steward's name for the record (client id); 403 for any other caller (audited as refused)."""
    from fhir_server.security.roles import may_steward_identity

    principal = request.context.principal
    if principal is None:
        return "local operator (auth off)"
    if not may_steward_identity(principal.role):
        raise FhirError(
            403,
            f"${request.name} changes how children's records are linked: it needs the steward role (or"
            f" admin); role '{principal.role.name}' may not",
            code="forbidden",
        )
    return str(principal.client_id)


def _patient_id(parameters: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = _one(parameters, name)
    if value is None:
        if required:
            raise FhirError(
                400,
                f"${name}: the parameter '{name}' (a Patient) is required",
                code="required",
                expression=[name],
            )
        return None
    ref = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(ref, str) or not ref.strip():
        raise FhirError(400, f"'{name}' must be a Patient reference", expression=[name])
    text = ref.strip()
    if "/" in text:
        kind, _, text = text.rpartition("/")
        if not kind.endswith("Patient"):
            raise FhirError(400, f"'{name}' must reference a Patient, not {kind}", expression=[name])
    return text


def _server_store(request: OperationRequest) -> Any:
    store = request.context.store
    return getattr(store, "_inner", store)


def _changed(request: OperationRequest, change: Any) -> OperationResult:
    """Parameters naming what changed; the golden versions written go into the request's AuditEvent."""
    guard = getattr(request.context.store, "guard", None)
    for stored in change.written:
        if guard is not None:
            guard.record(stored)
    parameters = [{"name": "result", "valueString": change.summary}]
    parameters += [
        {"name": "golden", "valueReference": {"reference": f"Patient/{g}"}} for g in change.goldens
    ]
    return OperationResult({"resourceType": "Parameters", "parameter": parameters})


async def _steward_change(request: OperationRequest, action: Any, *names: str) -> OperationResult:
    """Run one steward action on the named Patient parameters (each required), as the steward."""
    actor = _steward(request)
    ids = [_patient_id(request.parameters, name) for name in names]
    return _changed(request, await action(_server_store(request), *ids, actor))


async def link(request: OperationRequest) -> OperationResult:
    """``Patient/$identity-link``: put ``source`` with the child ``target`` (a manual, certain link)."""
    return await _steward_change(request, steward.link, "source", "target")


async def unlink(request: OperationRequest) -> OperationResult:
    """``Patient/$identity-unlink``: take ``source`` out of its child (a child of its own)."""
    return await _steward_change(request, steward.unlink, "source")


async def merge(request: OperationRequest) -> OperationResult:
    """``Patient/$identity-merge``: golden record ``from`` into golden record ``into``."""
    return await _steward_change(request, steward.merge, "from", "into")


async def unmerge(request: OperationRequest) -> OperationResult:
    """``Patient/$identity-unmerge``: undo the merge of golden record ``golden``."""
    return await _steward_change(request, steward.unmerge, "golden")


async def not_match(request: OperationRequest) -> OperationResult:
    """``Patient/$identity-not-match``: ``golden`` and ``other`` are different children."""
    return await _steward_change(request, steward.not_match, "golden", "other")


def _link_part(golden: str, link: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "golden", "valueReference": {"reference": f"Patient/{golden}"}},
        {"name": "source", "valueReference": {"reference": f"Patient/{link.source}"}},
        {"name": "assurance", "valueCode": link.assurance},
        {"name": "method", "valueCode": link.method},
    ]
    if link.rule:
        parts.append({"name": "rule", "valueCode": link.rule})
    if link.when:
        parts.append({"name": "when", "valueDateTime": link.when})
    if link.by:
        parts.append({"name": "by", "valueString": link.by})
    return {"name": "link", "part": parts}


def _candidate_part(item: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "golden", "valueReference": {"reference": f"Patient/{item.golden}"}},
        {"name": "candidate", "valueReference": {"reference": f"Patient/{item.other}"}},
        {"name": "score", "valueDecimal": round(item.score, 4)},
        {"name": "grade", "valueCode": item.grade},
    ]
    parts += [{"name": "reason", "valueString": r} for r in item.reasons]
    if item.when:
        parts.append({"name": "when", "valueDateTime": item.when})
    return {"name": "candidate", "part": parts}


async def links(request: OperationRequest) -> OperationResult:
    """``Patient/$identity-links``: a child's links and review items (``patient``), or the review queue."""
    _steward(request)
    store = request.context.store
    patient = _patient_id(request.parameters, "patient", required=False)
    count = _integer(request.parameters, "count") or 100
    parameters: list[dict[str, Any]] = []
    if patient is not None:
        golden, items = await steward.links_of(_server_store(request), patient)
        if await store.read("Patient", golden.id) is None:  # audited look-up through the caller's view
            raise FhirError(404, f"Patient/{patient} is not known", code="not-found")
        parameters += [_link_part(golden.id, link) for link in golden.state.links]
    else:
        items = await steward.review_queue(_server_store(request), count)
    parameters += [_candidate_part(item) for item in items]
    return OperationResult({"resourceType": "Parameters", "parameter": parameters})


async def link_existing(request: OperationRequest) -> OperationResult:
    """``Patient/$identity-link-existing``: start (or report) the job that links the stored Patients."""
    actor = _steward(request)
    server = _server_store(request)
    restart = _boolean(request.parameters, "restart")
    if _boolean(request.parameters, "wait"):
        record = await job.run(server, restart=restart)
    else:  # the server's job runner takes it up
        record = job.record(await job.submit(server, restart=restart, owner=actor))
    parameters: list[dict[str, Any]] = [{"name": "status", "valueCode": str(record["status"])}]
    if "id" in record:
        parameters.append({"name": "job", "valueString": str(record["id"])})
    for key in ("processed", "linked", "created", "queued"):
        parameters.append({"name": key, "valueInteger": int(record.get(key, 0))})
    return OperationResult({"resourceType": "Parameters", "parameter": parameters})
