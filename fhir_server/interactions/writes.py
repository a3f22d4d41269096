"""The one write path every writer shares: check, stamp, index, store.

Create, update, patch, delete, bundles, the CLI loader and the mappers all end here, so the
rules about ids, versions, validation and indexing are written once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson

from fhir_server import canonical, definitions, fhirjson
from fhir_server.interactions import offload
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.storage.base import Method, Store, StoredResource, StoreTransaction

# Types whose writes change who a child is (fhir_server.identity links them to the child's golden record).
_IDENTITY_TYPES = ("Patient", "RelatedPerson")

# Tags under this prefix are set by the server (e.g. the writing agency), never by clients.
SERVER_TAG_PREFIX = f"{canonical.BASE}/tag/"
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_last_instant = ""
_PERINATAL_TYPES = frozenset({"Observation", "EpisodeOfCare", "Encounter", "Procedure"})


def now_instant() -> str:
    """The current time as a FHIR instant in UTC with milliseconds, never going backwards."""
    global _last_instant
    value = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if value < _last_instant:
        value = _last_instant
    _last_instant = value
    return value


def new_id() -> str:
    return str(uuid.uuid4())


def check_id(id_: Any, where: str = "id") -> None:
    if not isinstance(id_, str) or not _ID.match(id_):
        raise FhirError(
            400, f"'{id_}' is not a valid FHIR id ([A-Za-z0-9-.], 1 to 64 characters)", expression=[where]
        )


def check_writable(resource_type: str, id_: str) -> None:
    """Refuse (405) to replace or delete one of HL7's shipped definitions (``fhir_server.catalog``)."""
    from fhir_server.catalog import is_reserved

    if is_reserved(resource_type, id_):
        raise FhirError(
            405,
            f"{resource_type}/{id_} is a FHIR R4 definition shipped with this server and is read-only;"
            " to change it, create your own with a new id and canonical url",
            code="not-supported",
            headers={"Allow": "GET"},
        )


def check_type_known(resource_type: str) -> None:
    if not definitions.is_resource_type(resource_type):
        raise FhirError(404, f"Unknown resource type '{resource_type}'", code="not-supported")


def parse_resource(body: bytes | dict[str, Any], resource_type: str | None) -> dict[str, Any]:
    """Parse and check the envelope: a JSON object whose resourceType matches the URL."""
    resource = fhirjson.parse(body) if isinstance(body, bytes | bytearray | str) else body
    if not isinstance(resource, dict):
        raise FhirError(400, "The body must be a JSON object holding a FHIR resource", code="structure")
    if isinstance(body, bytes | bytearray):
        check_unique_keys(bytes(body), resource)
    found = resource.get("resourceType")
    if not isinstance(found, str) or not found:
        raise FhirError(400, "The resource has no resourceType", code="required", expression=["resourceType"])
    if resource_type is not None and found != resource_type:
        raise FhirError(
            400,
            f"The body is a {found} but the URL names {resource_type}",
            expression=["resourceType"],
        )
    if not definitions.is_resource_type(found):
        raise FhirError(
            400, f"Unknown resource type '{found}'", code="not-supported", expression=["resourceType"]
        )
    return resource


def check_unique_keys(body: bytes, resource: Any) -> None:
    """422 when the JSON repeats a property inside one object (R4 JSON: properties appear once)."""
    repeated = fhirjson.duplicate_keys(body, resource)
    if repeated:
        issues = [
            {
                "severity": "error",
                "code": "structure",
                "diagnostics": f"{where}: the property is given more than once in one JSON object "
                "(R4 JSON allows each property once; the values would silently replace each other)",
                "expression": [where],
            }
            for where in repeated
        ]
        raise FhirError(422, issues[0]["diagnostics"], code="structure", issues=issues)


async def check_content(
    ctx: RequestContext, resource: dict[str, Any], tx: StoreTransaction, *, size: int = 0
) -> list[dict[str, Any]]:
    """Validate a resource for writing; raise 422 on errors, return warnings and information.

    ``size`` (bytes of the resource's JSON, when known) sends a large resource's validation off the
    event loop."""
    from fhir_server.interactions.content_check import check_for_write
    from fhir_server.validation import runtime

    if not ctx.extras.get("conformance_refreshed"):  # profiles and terminology created over REST
        from fhir_server.search import sync

        await runtime.refresh(ctx.store)
        await sync.refresh(ctx.store)  # custom search parameters, perhaps created by another process
        ctx.extras["conformance_refreshed"] = True
    issues = await check_for_write(resource, ctx.settings, tx, size=size)
    errors = [i for i in issues if i.get("severity") in ("error", "fatal")]
    if errors:
        first = errors[0].get("diagnostics", "invalid content")
        raise FhirError(422, f"The resource is not valid: {first}", code="processing", issues=issues)
    if resource.get("resourceType") == "StructureDefinition":
        runtime.check_structure_definition(resource)  # 422 when its snapshot cannot be generated
    if resource.get("resourceType") == "SearchParameter":
        # Checks the expression (422 if unusable) and registers it, refused in searches until reindexed.
        from fhir_server.search.registry import on_search_parameter_written

        on_search_parameter_written(resource)
    return issues


async def prepare(
    ctx: RequestContext,
    tx: StoreTransaction,
    resource_type: str,
    resource: dict[str, Any],
    raw: bytes | None,
    current: StoredResource | None,
) -> bytes | None:
    """What the server itself completes in a version before it is compared and stored (workflow rules:
    a referral's status change checked, agencies named by identifier resolved, due dates, who changed
    it). Changes ``resource`` in place; returns the bytes to store (the client's, with the members the
    server changed replaced, so everything else keeps its exact text)."""
    from fhir_server.subscriptions import prepare_subscription
    from fhir_server.workflow import prepare_write

    changed = await prepare_write(ctx.store, tx, resource_type, resource, current)
    if resource_type == "Subscription":
        changed |= await prepare_subscription(ctx.settings, tx, resource, current)
    if raw is None:
        return None
    for name in sorted(changed):
        if name in resource:
            raw = fhirjson.replace_member(raw, name, resource[name])
        else:
            raw = fhirjson.build_object([(k, v) for k, v in fhirjson.members(raw) if k != name])
    return raw


def _meta(resource: dict[str, Any], version: int, last_updated: str) -> dict[str, Any]:
    meta = resource.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta["versionId"] = str(version)
    meta["lastUpdated"] = last_updated
    return meta


def stamp(
    body: bytes | None,
    resource: dict[str, Any],
    resource_type: str,
    id_: str,
    version: int,
    last_updated: str,
) -> bytes:
    """The bytes to store: the client's JSON with server-set id and meta (``resource`` is updated too)."""
    meta = _meta(resource, version, last_updated)
    resource["id"] = id_
    resource["meta"] = meta
    if body is None:
        return fhirjson.dumps(resource)
    return fhirjson.with_server_fields(body, resource_type, id_, meta)


def index_rows(resource: dict[str, Any]) -> Any:
    from fhir_server.search.extract import extract_index

    return extract_index(resource)


async def write_version(
    tx: StoreTransaction,
    resource_type: str,
    id_: str,
    resource: dict[str, Any],
    body: bytes | None,
    *,
    current: StoredResource | None,
    method: Method,
) -> StoredResource:
    """Store ``resource`` as the next version after ``current`` (or version 1)."""
    if resource_type in _IDENTITY_TYPES:
        from fhir_server.identity import hooks

        hooks.before_write(resource_type, id_, resource, current)
    version = (current.version + 1) if current else 1
    last_updated = now_instant()
    data, rows = await offload.run(
        len(body) if body else 0,
        _stamped_and_indexed,
        body,
        resource,
        resource_type,
        id_,
        version,
        last_updated,
    )
    stored = StoredResource(resource_type, id_, version, last_updated, method, data)
    written = await tx.put(stored, rows)
    if resource_type == "QuestionnaireResponse":
        # A flower response is scored into Observations in the same transaction (fhir_server.wellbeing).
        from fhir_server.wellbeing import scoring

        await scoring.on_written(tx, written or stored, resource)
    elif resource_type in _PERINATAL_TYPES:
        # Perinatal risk flags rest on these records: derived in the same transaction (fhir_server.perinatal).
        from fhir_server import perinatal

        await perinatal.on_written(tx, written or stored, resource)
    if resource_type in _IDENTITY_TYPES:
        await hooks.after_write(tx, written or stored, resource)
    await _after_write(tx, written or stored, current, rows)
    return written


def first_version(
    resource_type: str, resource: dict[str, Any], indexer: Callable[[dict[str, Any]], Any] | None = None
) -> tuple[StoredResource, Any]:
    """Version 1 of ``resource`` under a new id, with its index rows, for ``Store.append``.

    ``indexer``: the rows of a resource whose shape the server knows (its AuditEvents), made without
    the generic extractor; it must give exactly what ``index_rows`` gives.
    """
    last_updated = now_instant()
    id_ = new_id()
    data = stamp(None, resource, resource_type, id_, 1, last_updated)
    rows = (indexer or index_rows)(resource)
    return StoredResource(resource_type, id_, 1, last_updated, "POST", data), rows


def _stamped_and_indexed(
    body: bytes | None,
    resource: dict[str, Any],
    resource_type: str,
    id_: str,
    version: int,
    last_updated: str,
) -> tuple[bytes, Any]:
    data = stamp(body, resource, resource_type, id_, version, last_updated)
    return data, index_rows(resource)


@asynccontextmanager
async def transaction(store: Store) -> AsyncIterator[StoreTransaction]:
    """A write transaction for interactions: identity links of the records it changes are made once,
    just before it commits (``fhir_server.identity.hooks``)."""
    from fhir_server.identity import hooks

    async with store.transaction() as tx, hooks.deferred(tx):
        yield tx


async def _after_write(
    tx: StoreTransaction, stored: StoredResource, current: StoredResource | None, index: Any
) -> None:
    """Consequences of a stored version, in the same transaction: workflow rules, then the events it
    causes for subscriptions (recorded with the write, so a crash never loses one)."""
    from fhir_server.subscriptions import record_events
    from fhir_server.workflow import after_write

    await after_write(tx, stored, current)
    await record_events(tx, stored, current, index)


def _comparable(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource without what the server sets itself: versionId, lastUpdated and server tags."""
    meta = dict(resource.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    tags = [t for t in meta.get("tag", []) if not str(t.get("system", "")).startswith(SERVER_TAG_PREFIX)]
    if tags:
        meta["tag"] = tags
    else:
        meta.pop("tag", None)
    return {**resource, "meta": meta} if meta else {k: v for k, v in resource.items() if k != "meta"}


async def authorize_unchanged(
    tx: StoreTransaction, current: StoredResource, resource: dict[str, Any]
) -> None:
    """An update that changes nothing is still a write: a guarding layer must approve it too."""
    authorize = getattr(tx, "authorize_write", None)
    if authorize is not None:
        await authorize(current.resource_type, current.id, resource)


def unchanged(current: StoredResource | None, resource: dict[str, Any], body: bytes | None) -> bool:
    """True when an update would store what is already current (no new version needed).

    Compared as parsed JSON, ignoring what the server itself sets (version, time, server tags such as
    the writing agency), so re-sending the same content is a no-op.
    """
    if current is None or current.deleted:
        return False
    candidate = {**resource, "id": current.id}
    return _comparable(candidate) == _comparable(orjson.loads(current.body))


async def delete_version(tx: StoreTransaction, current: StoredResource) -> StoredResource:
    if current.resource_type in _IDENTITY_TYPES:
        from fhir_server.identity import hooks

        hooks.before_write(current.resource_type, current.id, None, current)
    tombstone = StoredResource(
        current.resource_type, current.id, current.version + 1, now_instant(), "DELETE", b""
    )
    await tx.delete(tombstone)
    if current.resource_type == "QuestionnaireResponse":
        from fhir_server.wellbeing import scoring

        await scoring.on_deleted(tx, current)
    if current.resource_type in _PERINATAL_TYPES:
        from fhir_server import perinatal

        await perinatal.on_deleted(tx, current)
    if current.resource_type in _IDENTITY_TYPES:
        await hooks.after_write(tx, tombstone, orjson.loads(current.body) if current.body else None)
    await _after_write(tx, tombstone, current, None)
    if current.resource_type == "SearchParameter":
        from fhir_server.search.registry import on_search_parameter_deleted

        url = orjson.loads(current.body).get("url")
        if url:
            on_search_parameter_deleted(url)
    return tombstone
