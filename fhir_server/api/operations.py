"""HTTP translation for ``$operations``: build the OperationRequest, run the handler, answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from fhir_server import fhirjson
from fhir_server.api import negotiation
from fhir_server.api.responses import SECURITY_HEADERS, fhir_response
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.interactions.parameters import check_parameters
from fhir_server.operations.registry import Level, OperationRequest, find
from fhir_server.operations.table import OPERATIONS

if TYPE_CHECKING:
    from fhir_server.api.routes import FhirRequest


def _query_parameters(params: list[tuple[str, str]]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": k, "valueString": v} for k, v in params]}


def format_is_parameter(segments: list[str]) -> bool:
    """True when the request names an operation whose ``_format`` chooses its output (csv, parquet...)."""
    if not segments or not segments[-1].startswith("$") or len(segments) > 3:
        return False
    name = segments[-1][1:]
    return any(op.name == name and op.takes_format for op in OPERATIONS)


async def run_operation(
    fhir: FhirRequest, ctx: RequestContext, name: str, resource_type: str | None, id_: str | None
) -> Response:
    level: Level = "instance" if id_ else "type" if resource_type else "system"
    operation = find(OPERATIONS, name, level, resource_type)
    if operation is None:
        where = f"on {resource_type}" if resource_type else "at the system level"
        raise FhirError(
            404, f"The operation ${name} is not supported {where} ({level} level)", code="not-supported"
        )
    parameters = _query_parameters(fhir.search_params())
    if operation.takes_format and fhir.format is not None:
        parameters["parameter"].append({"name": "_format", "valueString": fhir.format})
    body_resource = None
    if fhir.method == "POST":
        negotiation.check_body_type(fhir.header("content-type"))
        data = await fhir.body(ctx.settings.max_body_bytes)
        if data.strip():
            parsed = fhirjson.parse(data)
            if not isinstance(parsed, dict) or "resourceType" not in parsed:
                raise FhirError(
                    400,
                    f"The body of ${name} must be a Parameters resource or a resource",
                    expression=["resourceType"],
                )
            if parsed["resourceType"] == "Parameters":
                check_parameters(parsed)
                parameters = {**parsed, "parameter": [*parsed.get("parameter", []), *parameters["parameter"]]}
            else:
                body_resource = parsed
    elif fhir.method == "GET":
        if operation.affects_state or not operation.get_allowed:
            raise FhirError(
                405,
                f"${name} changes data, so it must be called with POST",
                code="not-supported",
                headers={"Allow": "POST"},
            )
    else:
        raise FhirError(
            405, f"${name} takes GET or POST", code="not-supported", headers={"Allow": "GET, POST"}
        )
    request = OperationRequest(
        name=name,
        level=level,
        resource_type=resource_type,
        id=id_,
        method=fhir.method,
        parameters=parameters,
        context=ctx,
        body_resource=body_resource,
        headers=dict(fhir.http.headers),
    )
    result = await operation.handler(request)
    if result.raw is not None:
        return Response(result.raw, status_code=result.status, headers={**SECURITY_HEADERS, **result.headers})
    return fhir_response(result.body, result.status, result.headers, pretty=fhir.pretty)
