"""patch: PATCH [type]/[id] (and conditional PATCH [type]?query) with JSON Patch or FHIRPath Patch."""

from __future__ import annotations

from typing import Any, Literal

from fhir_server import fhirjson
from fhir_server.interactions import conditional, offload, writes
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.interactions.patching import fhirpath_patch, json_patch
from fhir_server.interactions.results import Outcome, location
from fhir_server.interactions.update import check_version, parse_if_match
from fhir_server.storage.base import StoreTransaction

PatchFormat = Literal["json-patch", "fhirpath-patch"]


def patched(current_body: bytes, patch_format: PatchFormat, patch: Any) -> bytes:
    """The patched resource as JSON bytes; untouched decimals keep their exact text."""
    document = fhirjson.parse_exact(current_body)
    before = (document.get("resourceType"), document.get("id"))
    if patch_format == "json-patch":
        document = json_patch.apply(document, patch)
    else:
        document = fhirpath_patch.apply(document, patch)
    if not isinstance(document, dict) or (document.get("resourceType"), document.get("id")) != before:
        raise FhirError(
            422, "A patch may not change the resource's type or id", code="processing", expression=["id"]
        )
    return fhirjson.dumps(document)


async def patch(
    ctx: RequestContext,
    resource_type: str,
    id_: str,
    patch_format: PatchFormat,
    body: Any,
    *,
    if_match: str | None = None,
) -> Outcome:
    writes.check_type_known(resource_type)
    expected = parse_if_match(if_match)
    async with writes.transaction(ctx.store) as tx:
        result = await patch_in(ctx, tx, resource_type, id_, patch_format, body, expected_version=expected)
    return result


async def patch_in(
    ctx: RequestContext,
    tx: StoreTransaction,
    resource_type: str,
    id_: str,
    patch_format: PatchFormat,
    body: Any,
    *,
    expected_version: int | None = None,
) -> Outcome:
    writes.check_writable(resource_type, id_)
    current = await tx.read(resource_type, id_)
    if current is None:
        raise FhirError(404, f"{resource_type}/{id_} is not known", code="not-found")
    if current.deleted:
        raise FhirError(410, f"{resource_type}/{id_} was deleted", code="deleted")
    check_version(current, expected_version, f"{resource_type}/{id_}")
    size = len(current.body)
    new_body = await offload.run(size, patched, current.body, patch_format, body)
    # Each patch may add nesting: the result must stay within the limit a whole body has.
    await offload.run(size, fhirjson.check_depth, new_body, ctx.settings.max_json_depth)
    resource = await offload.run(size, writes.parse_resource, new_body, resource_type)
    new_body = await writes.prepare(ctx, tx, resource_type, resource, new_body, current) or new_body
    issues = await writes.check_content(ctx, resource, tx, size=size)
    if await offload.run(size, writes.unchanged, current, resource, new_body):
        await writes.authorize_unchanged(tx, current, resource)
        return Outcome(200, stored=current, location=location(ctx.base_url, current), issues=issues)
    stored = await writes.write_version(
        tx, resource_type, id_, resource, new_body, current=current, method="PATCH"
    )
    return Outcome(200, stored=stored, location=location(ctx.base_url, stored), issues=issues)


async def conditional_patch(
    ctx: RequestContext,
    resource_type: str,
    query: str,
    patch_format: PatchFormat,
    body: Any,
    *,
    if_match: str | None = None,
) -> Outcome:
    writes.check_type_known(resource_type)
    expected = parse_if_match(if_match)
    async with writes.transaction(ctx.store) as tx:
        match = await conditional.find_one(ctx, tx, resource_type, query, "Conditional patch")
        if match is None:
            raise FhirError(404, "No resource matches the conditional patch criteria", code="not-found")
        return await patch_in(ctx, tx, resource_type, match.id, patch_format, body, expected_version=expected)
