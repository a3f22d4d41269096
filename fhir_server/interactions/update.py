"""update (PUT [type]/[id], update-as-create) and conditional update (PUT [type]?query)."""

from __future__ import annotations

import re
from typing import Any

from fhir_server.interactions import conditional, offload, writes
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.interactions.results import Outcome, location
from fhir_server.storage.base import StoredResource, StoreTransaction

# A version id as we write them: a positive decimal that fits SQLite's and Mongo's 64-bit integers.
_VERSION = re.compile(r"[0-9]{1,18}")


def version_number(text: str) -> int | None:
    """The version a ``_history/[vid]`` or ETag names, or None when no version could have that id."""
    return int(text) if _VERSION.fullmatch(text) else None


def parse_if_match(value: Any, header: str = "If-Match") -> int | None:
    """The version named by an If-Match header (``W/"3"``, ``"3"`` or ``3``).

    A well-formed version too large to exist becomes -1, which no resource has (412, not 400).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = value.strip() if isinstance(value, str) else ""
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not (text.isascii() and text.isdigit()):
        shown = value if isinstance(value, str) and len(value) <= 64 else f"{str(value)[:64]}..."
        raise FhirError(400, f"{header} '{shown}' is not a version ETag like W/\"3\"", expression=[header])
    number = version_number(text)
    return -1 if number is None else number


def check_version(current: StoredResource | None, expected: int | None, what: str) -> None:
    if expected is None:
        return
    asked = f"version {expected}" if expected >= 0 else "a version beyond any stored one"
    if current is None or current.deleted:
        raise FhirError(412, f"{what} does not exist, but If-Match asked for {asked}", code="conflict")
    if current.version != expected:
        raise FhirError(
            412,
            f"{what} is at version {current.version}, not {asked} as If-Match requires",
            code="conflict",
        )


async def update(
    ctx: RequestContext,
    resource_type: str,
    id_: str,
    body: bytes | dict[str, Any],
    *,
    if_match: str | None = None,
) -> Outcome:
    writes.check_type_known(resource_type)
    writes.check_id(id_)
    raw = body if isinstance(body, bytes) else None
    resource = await offload.run(len(raw or b""), writes.parse_resource, body, resource_type)
    expected = parse_if_match(if_match)
    async with writes.transaction(ctx.store) as tx:
        result = await update_in(ctx, tx, resource_type, id_, resource, raw, expected_version=expected)
    return result


async def update_in(
    ctx: RequestContext,
    tx: StoreTransaction,
    resource_type: str,
    id_: str,
    resource: dict[str, Any],
    raw: bytes | None,
    *,
    expected_version: int | None = None,
    check_body_id: bool = True,
) -> Outcome:
    body_id = resource.get("id")
    if check_body_id and body_id is None:
        raise FhirError(
            400, "An update needs the resource id in the body", code="required", expression=["id"]
        )
    if body_id is not None and body_id != id_:
        raise FhirError(
            400, f"The body's id '{body_id}' differs from the URL's id '{id_}'", expression=["id"]
        )
    writes.check_writable(resource_type, id_)
    current = await tx.read(resource_type, id_)
    check_version(current, expected_version, f"{resource_type}/{id_}")
    size = len(raw or b"")
    raw = await writes.prepare(ctx, tx, resource_type, resource, raw, current)
    issues = await writes.check_content(ctx, resource, tx, size=size)
    if await offload.run(size, writes.unchanged, current, resource, raw):
        assert current is not None
        await writes.authorize_unchanged(tx, current, resource)
        return Outcome(200, stored=current, location=location(ctx.base_url, current), issues=issues)
    stored = await writes.write_version(tx, resource_type, id_, resource, raw, current=current, method="PUT")
    created = current is None or current.deleted
    return Outcome(
        201 if created else 200, stored=stored, location=location(ctx.base_url, stored), issues=issues
    )


async def conditional_update(
    ctx: RequestContext,
    resource_type: str,
    query: str,
    body: bytes | dict[str, Any],
    *,
    if_match: str | None = None,
) -> Outcome:
    writes.check_type_known(resource_type)
    raw = body if isinstance(body, bytes) else None
    resource = await offload.run(len(raw or b""), writes.parse_resource, body, resource_type)
    expected = parse_if_match(if_match)
    async with writes.transaction(ctx.store) as tx:
        result = await conditional_update_in(
            ctx, tx, resource_type, query, resource, raw, expected_version=expected
        )
    return result


async def conditional_update_in(
    ctx: RequestContext,
    tx: StoreTransaction,
    resource_type: str,
    query: str,
    resource: dict[str, Any],
    raw: bytes | None,
    *,
    expected_version: int | None = None,
) -> Outcome:
    match = await conditional.find_one(ctx, tx, resource_type, query, "Conditional update")
    body_id = resource.get("id")
    if match is not None:
        if body_id is not None and body_id != match.id:
            raise FhirError(
                400,
                f"The criteria match {resource_type}/{match.id} but the body's id is '{body_id}'",
                expression=["id"],
            )
        return await update_in(
            ctx,
            tx,
            resource_type,
            match.id,
            resource,
            raw,
            expected_version=expected_version,
            check_body_id=False,
        )
    if body_id is None:
        from fhir_server.interactions.create import create_in

        return await create_in(ctx, tx, resource_type, resource, raw)
    writes.check_id(body_id)
    existing = await tx.read(resource_type, body_id)
    if existing is not None and not existing.deleted:
        raise FhirError(
            409,
            f"No resource matches the criteria, but {resource_type}/{body_id} exists and does not match them",
            code="conflict",
        )
    return await update_in(ctx, tx, resource_type, body_id, resource, raw, expected_version=expected_version)
