"""HTTP for resource types the server hosts beside R4's: SQL on FHIR's ``ViewDefinition``.

Read, vread-free versioned update, create, delete, search (``name``, ``url``, ``resource``, ``status``,
``_id``) and the view-run operations; the rules live in ``fhir_server.analytics.views.library``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response

from fhir_server.analytics.views import library
from fhir_server.api.responses import fhir_response, http_date
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError

if TYPE_CHECKING:
    from fhir_server.api.routes import FhirRequest

TYPES = frozenset({library.RESOURCE_TYPE})
Operation = Callable[["FhirRequest", RequestContext, str, str | None, str | None], Awaitable[Response]]


def _headers(ctx: RequestContext, stored: Any, location: bool = False) -> dict[str, str]:
    headers = {"ETag": f'W/"{stored.version}"', "Last-Modified": http_date(stored.last_updated)}
    if location:
        url = f"{ctx.base_url}/{stored.resource_type}/{stored.id}/_history/{stored.version}"
        headers["Location"] = headers["Content-Location"] = url
    return headers


def _not_allowed(method: str, allowed: str) -> FhirError:
    return FhirError(
        405,
        f"{method} is not allowed here (allowed: {allowed})",
        code="not-supported",
        headers={"Allow": allowed},
    )


async def dispatch(fhir: FhirRequest, ctx: RequestContext, operation: Operation) -> Response:
    seg, method = fhir.segments, fhir.method
    head = seg[0]
    if len(seg) >= 2 and seg[-1].startswith("$") and len(seg) <= 3:
        return await operation(fhir, ctx, seg[-1][1:], head, seg[1] if len(seg) == 3 else None)
    if len(seg) == 1 or (len(seg) == 2 and seg[1] == "_search"):
        if method in ("GET", "HEAD") or (method == "POST" and len(seg) == 2):
            return _bundle(ctx, await library.search(ctx, fhir.search_params()))
        if method == "POST":
            body = await fhir.resource_body(ctx)
            stored, _ = await library.write(ctx, None, body)
            return fhir_response(stored.body, 201, _headers(ctx, stored, location=True), pretty=fhir.pretty)
        raise _not_allowed(method, "GET, POST")
    if len(seg) == 2:
        id_ = seg[1]
        if method in ("GET", "HEAD"):
            stored = await library.read(ctx, id_)
            return fhir_response(stored.body, 200, _headers(ctx, stored), pretty=fhir.pretty)
        if method == "PUT":
            body = await fhir.resource_body(ctx)
            stored, created = await library.write(ctx, id_, body)
            return fhir_response(
                stored.body, 201 if created else 200, _headers(ctx, stored, created), pretty=fhir.pretty
            )
        if method == "DELETE":
            await library.delete(ctx, id_)
            return fhir_response(None, 204)
        raise _not_allowed(method, "GET, PUT, DELETE")
    raise FhirError(
        404,
        f"No endpoint at '{'/'.join(seg)}'"
        " (ViewDefinition supports read, search, create, update, delete and $run)",
        code="not-found",
    )


def _bundle(ctx: RequestContext, views: list[dict[str, Any]]) -> Response:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(views),
        "link": [{"relation": "self", "url": f"{ctx.base_url}/{library.RESOURCE_TYPE}"}],
        "entry": [
            {
                "fullUrl": f"{ctx.base_url}/{library.RESOURCE_TYPE}/{v['id']}",
                "resource": v,
                "search": {"mode": "match"},
            }
            for v in views
        ],
    }
    return fhir_response(orjson.dumps(bundle))
