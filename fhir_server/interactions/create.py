"""create: POST [type], with conditional create through If-None-Exist."""

from __future__ import annotations

from typing import Any

from fhir_server.interactions import conditional, offload, writes
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.results import Outcome, location
from fhir_server.storage.base import StoreTransaction


async def create(
    ctx: RequestContext, resource_type: str, body: bytes | dict[str, Any], *, if_none_exist: str | None = None
) -> Outcome:
    writes.check_type_known(resource_type)
    raw = body if isinstance(body, bytes) else None
    resource = await offload.run(len(raw or b""), writes.parse_resource, body, resource_type)
    async with writes.transaction(ctx.store) as tx:
        result = await create_in(ctx, tx, resource_type, resource, raw, if_none_exist=if_none_exist)
    return result


async def create_in(
    ctx: RequestContext,
    tx: StoreTransaction,
    resource_type: str,
    resource: dict[str, Any],
    raw: bytes | None,
    *,
    if_none_exist: str | None = None,
    id_: str | None = None,
) -> Outcome:
    """Create inside an open transaction (bundles call this directly). The id of the body is ignored."""
    if if_none_exist:
        existing = await conditional.find_one(ctx, tx, resource_type, if_none_exist, "If-None-Exist")
        if existing is not None:
            return Outcome(200, stored=existing, location=location(ctx.base_url, existing))
    raw = await writes.prepare(ctx, tx, resource_type, resource, raw, None)
    issues = await writes.check_content(ctx, resource, tx, size=len(raw or b""))
    stored = await writes.write_version(
        tx, resource_type, id_ or writes.new_id(), resource, raw, current=None, method="POST"
    )
    return Outcome(201, stored=stored, location=location(ctx.base_url, stored), issues=issues)
