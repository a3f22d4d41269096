"""``$validate`` (type and instance level): check a resource against R4 and profiles without storing it.

Per the specification the answer is 200 with an OperationOutcome even when the resource is invalid;
only a request we cannot act on (no resource, bad mode) is an error.
"""

from __future__ import annotations

from typing import Any

from fhir_server.interactions.errors import (
    FhirError,
    bad_request,
    information_outcome,
    not_found,
    operation_outcome,
)
from fhir_server.operations.registry import (
    OperationRequest,
    OperationResult,
    parameter_value,
    parameter_values,
)
from fhir_server.validation import canonicals, runtime
from fhir_server.validation.validator import validate

_MODES = frozenset({"create", "update", "delete"})


def _resource_of(request: OperationRequest) -> dict[str, Any] | None:
    if request.body_resource is not None:
        return request.body_resource
    value = parameter_value(request.parameters, "resource")
    return value if isinstance(value, dict) else None


async def validate_operation(request: OperationRequest) -> OperationResult:
    """Validate the given (or, for instance-level delete/update without a body, the stored) resource."""
    mode = parameter_value(request.parameters, "mode")
    if mode is not None and (not isinstance(mode, str) or mode not in _MODES):
        shown = mode if isinstance(mode, str) and len(mode) <= 64 else type(mode).__name__
        raise bad_request(
            f"Unknown $validate mode {shown!r} (create, update or delete)", ["Parameters.parameter"]
        )
    profiles = [p for p in parameter_values(request.parameters, "profile") if isinstance(p, str)]
    resource = _resource_of(request)
    if mode == "delete":
        if request.level != "instance" or request.resource_type is None or request.id is None:
            raise bad_request("$validate mode=delete needs an instance (Type/id)")
        stored = await request.context.store.read(request.resource_type, request.id)
        if stored is None or stored.deleted:
            raise not_found(f"{request.resource_type}/{request.id} does not exist")
        return OperationResult(information_outcome("All OK: the resource may be deleted"))
    if resource is None:
        raise bad_request("$validate needs a resource: the request body or a 'resource' parameter")
    issues: list[dict[str, Any]] = []
    if request.resource_type and resource.get("resourceType") != request.resource_type:
        issues.append(
            {
                "severity": "error",
                "code": "invalid",
                "expression": ["resourceType"],
                "diagnostics": f"resourceType {resource.get('resourceType')!r} does not match the "
                f"endpoint {request.resource_type}",
            }
        )
    if (mode == "update" or request.level == "instance") and (
        request.id is not None and resource.get("id") != request.id
    ):
        issues.append(
            {
                "severity": "error",
                "code": "invalid",
                "expression": [f"{request.resource_type}.id"],
                "diagnostics": f"The resource id {resource.get('id')!r} does not match {request.id!r}",
            }
        )
    await runtime.refresh(request.context.store)
    found = await canonicals.prefetch(resource, request.context.store)
    issues.extend(validate(resource, profiles or None, canonicals=found))
    if resource.get("resourceType") == "StructureDefinition" and not any(
        i.get("severity") in ("error", "fatal") for i in issues
    ):
        try:
            runtime.check_structure_definition(resource)
        except FhirError as exc:
            issues.extend(exc.outcome()["issue"])
    if not issues:
        return OperationResult(information_outcome("All OK"))
    return OperationResult(operation_outcome(issues))
