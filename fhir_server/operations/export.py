"""``$export`` kick-off (FHIR Bulk Data Access v2) at system, Patient and Group level.

Thin: the request is checked and the job started by ``fhir_server.export.service``; the answer is
202 Accepted with the status URL in ``Content-Location``.
"""

from __future__ import annotations

from fhir_server.export import service
from fhir_server.export.request import Level
from fhir_server.operations.registry import OperationRequest, OperationResult


def _prefer(header: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in header.replace(";", ",").split(","):
        key, _, value = part.strip().partition("=")
        if key:
            found[key.lower()] = value.strip().strip('"').lower()
    return found


async def export(request: OperationRequest) -> OperationResult:
    ctx = request.context
    level: Level = (
        "group" if request.resource_type == "Group" else "patient" if request.resource_type else "system"
    )
    audit = ctx.extras.get("audit")
    fhir = ctx.extras.get("request")
    security = getattr(fhir.http.app.state, "security", None) if fhir is not None else None
    started = await service.kick_off(
        store=ctx.store,
        settings=ctx.settings,
        base_url=ctx.base_url,
        parameters=request.parameters,
        level=level,
        group_id=request.id,
        prefer=_prefer(request.headers.get("prefer", "")),
        principal=ctx.principal,
        purpose=getattr(audit, "purpose", None),
        request_url=str(fhir.http.url) if fhir is not None else ctx.base_url,
        consents=security.consents if security is not None else None,
    )
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "information",
                "code": "informational",
                "diagnostics": f"Export {started.job_id} started; poll {started.status_url} for its status",
            }
        ],
    }
    return OperationResult(outcome, status=202, headers={"Content-Location": started.status_url})
