"""HTTP translation of the Bulk Data status and file URLs: ``[base]/_export/{job}`` and
``[base]/_export/{job}/{file}`` (the kick-off is the ``$export`` operation)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

import orjson
from starlette.responses import FileResponse, Response

from fhir_server.api.responses import SECURITY_HEADERS, fhir_response
from fhir_server.export import service
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError

if TYPE_CHECKING:
    from fhir_server.api.routes import FhirRequest

NDJSON = "application/fhir+ndjson"


def _client(ctx: RequestContext) -> str | None:
    return ctx.principal.client_id if ctx.principal is not None else None


def _not_allowed(method: str, allowed: str) -> FhirError:
    return FhirError(
        405,
        f"{method} is not allowed here (allowed: {allowed})",
        code="not-supported",
        headers={"Allow": allowed},
    )


async def handle(fhir: FhirRequest, ctx: RequestContext, parts: list[str]) -> Response:
    if len(parts) == 1:
        job_id = parts[0]
        if fhir.method in ("GET", "HEAD"):
            return await _status(ctx, job_id)
        if fhir.method == "DELETE":
            await service.cancel(ctx.store, job_id, _client(ctx))
            return fhir_response(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "information",
                            "code": "informational",
                            "diagnostics": f"Export {job_id} cancelled; its files are removed",
                        }
                    ],
                },
                202,
            )
        raise _not_allowed(fhir.method, "GET, DELETE")
    if len(parts) == 2:
        if fhir.method not in ("GET", "HEAD"):
            raise _not_allowed(fhir.method, "GET")
        path = await service.file_path(ctx.store, parts[0], parts[1], _client(ctx))
        return FileResponse(path, media_type=NDJSON, headers=dict(SECURITY_HEADERS))
    raise FhirError(404, "No export resource at this address", code="not-found")


async def _status(ctx: RequestContext, job_id: str) -> Response:
    retry = str(ctx.settings.export_retry_after)
    state = await service.status(ctx.store, ctx.settings, job_id, _client(ctx))
    if not state.done:
        return Response(
            status_code=202,
            headers={**SECURITY_HEADERS, "X-Progress": state.progress[:200], "Retry-After": retry},
        )
    headers = dict(SECURITY_HEADERS)
    if state.expires is not None:
        headers["Expires"] = format_datetime(datetime.fromtimestamp(state.expires, UTC), usegmt=True)
    return Response(
        orjson.dumps(state.manifest), status_code=200, media_type="application/json", headers=headers
    )
