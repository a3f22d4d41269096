"""delete (DELETE [type]/[id]) and conditional delete (DELETE [type]?query), single or multiple."""

from __future__ import annotations

from fhir_server.interactions import conditional, writes
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.interactions.results import Outcome
from fhir_server.interactions.update import check_version, parse_if_match
from fhir_server.storage.base import StoreTransaction

# A conditional delete touching more resources than this is refused rather than run unbounded.
MAX_CONDITIONAL_DELETE = 1_000


async def delete(
    ctx: RequestContext, resource_type: str, id_: str, *, if_match: str | None = None
) -> Outcome:
    writes.check_type_known(resource_type)
    expected = parse_if_match(if_match)
    async with writes.transaction(ctx.store) as tx:
        return await delete_in(ctx, tx, resource_type, id_, expected_version=expected)


async def delete_in(
    ctx: RequestContext,
    tx: StoreTransaction,
    resource_type: str,
    id_: str,
    *,
    expected_version: int | None = None,
) -> Outcome:
    """Delete if present; deleting what is absent or already deleted succeeds with nothing to do."""
    if resource_type == "AuditEvent":
        raise FhirError(405, "AuditEvents cannot be deleted", code="not-supported")
    writes.check_writable(resource_type, id_)
    current = await tx.read(resource_type, id_)
    check_version(current, expected_version, f"{resource_type}/{id_}")
    if current is None:
        return Outcome(204, issues=[_info(f"{resource_type}/{id_} did not exist; nothing was deleted")])
    if current.deleted:
        return Outcome(204, stored=current, issues=[_info(f"{resource_type}/{id_} was already deleted")])
    tombstone = await writes.delete_version(tx, current)
    return Outcome(204, stored=tombstone, issues=[_info(f"Deleted {resource_type}/{id_}")])


async def conditional_delete(ctx: RequestContext, resource_type: str, query: str) -> Outcome:
    writes.check_type_known(resource_type)
    async with writes.transaction(ctx.store) as tx:
        return await conditional_delete_in(ctx, tx, resource_type, query)


async def conditional_delete_in(
    ctx: RequestContext, tx: StoreTransaction, resource_type: str, query: str
) -> Outcome:
    """Deletes every match (the spec's 'multiple' mode), up to ``MAX_CONDITIONAL_DELETE``."""
    found = await conditional.matches(ctx, tx, resource_type, query, limit=MAX_CONDITIONAL_DELETE + 1)
    if len(found) > MAX_CONDITIONAL_DELETE:
        raise FhirError(
            412,
            f"The criteria match more than {MAX_CONDITIONAL_DELETE} resources; narrow them",
            code="too-costly",
        )
    if not found:
        return Outcome(204, issues=[_info("No resource matched the criteria; nothing was deleted")])
    for match in found:
        await writes.delete_version(tx, match)
    ids = ", ".join(f"{m.resource_type}/{m.id}" for m in found)
    return Outcome(204, issues=[_info(f"Deleted {len(found)}: {ids}")])


def _info(text: str) -> dict[str, str]:
    return {"severity": "information", "code": "informational", "diagnostics": text}
