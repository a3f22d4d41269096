"""Stored ViewDefinitions: the shipped ones and those an admin adds, as versioned resources.

ViewDefinition is not an R4 resource type (SQL on FHIR defines it as a logical model), so the server
hosts it beside the R4 types: it is stored, versioned and audited like any resource, readable by any
authenticated client, searchable by ``name``, ``url``, ``resource``, ``status`` and ``_id``, and written
only by admins (a view decides what an export contains, which is configuration, like a SearchParameter).
Every write is checked by compiling the view; a bad one is a 422 naming the element.
"""

from __future__ import annotations

from functools import cache
from importlib import resources as package_files
from typing import Any

import orjson

from fhir_server import fhirjson
from fhir_server.analytics.views.definition import View, ViewError, compile_view
from fhir_server.interactions import writes
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.storage.base import StoredResource

RESOURCE_TYPE = "ViewDefinition"
SEARCH_PARAMETERS = ("_id", "name", "url", "resource", "status")


@cache
def shipped_views() -> tuple[dict[str, Any], ...]:
    """The views this release ships (``views/data/*.json``), in file-name order."""
    folder = package_files.files("fhir_server.analytics.views") / "data"
    out = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            out.append(orjson.loads(entry.read_bytes()))
    return tuple(out)


@cache
def shipped_view(name: str) -> View:
    """A shipped view by id or name, compiled (the warehouse and the measures use these)."""
    for view in shipped_views():
        if name in (view.get("id"), view.get("name")):
            return compile_view(view)
    raise KeyError(name)


def raw_store(store: Any) -> Any:
    """The store beneath the request's security wrapper (ViewDefinitions carry no child's data)."""
    return getattr(store, "_inner", store)


def check_view(resource: dict[str, Any]) -> View:
    try:
        return compile_view(resource)
    except ViewError as exc:
        raise FhirError(
            422, f"The ViewDefinition is not valid: {exc.message}", code="invalid", expression=[exc.where]
        ) from None


async def read(ctx: RequestContext, id_: str) -> StoredResource:
    stored = await raw_store(ctx.store).read(RESOURCE_TYPE, id_)
    if stored is None:
        raise FhirError(404, f"ViewDefinition/{id_} is not known", code="not-found")
    if stored.deleted:
        raise FhirError(410, f"ViewDefinition/{id_} has been deleted", code="deleted")
    return stored


async def all_views(ctx: RequestContext) -> list[dict[str, Any]]:
    return [orjson.loads(s.body) async for s in raw_store(ctx.store).iterate(RESOURCE_TYPE)]


def _matches(view: dict[str, Any], params: list[tuple[str, str]]) -> bool:
    for name, value in params:
        wanted = value.split(",")
        if name == "_id":
            ok = view.get("id") in wanted
        elif name == "url":
            ok = view.get("url") in [w.split("|")[0] for w in wanted]
        elif name == "name":
            text = str(view.get("name", "")).lower()
            ok = any(text.startswith(w.lower()) for w in wanted)
        elif name == "resource":
            ok = view.get("resource") in wanted
        else:
            ok = view.get("status") in wanted
        if not ok:
            return False
    return True


async def search(ctx: RequestContext, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    for name, _ in params:
        if name not in SEARCH_PARAMETERS and name not in ("_count",):
            raise FhirError(
                400,
                f"Unknown search parameter '{name}' for ViewDefinition"
                f" (supported: {', '.join(SEARCH_PARAMETERS)})",
                expression=[name],
            )
    criteria = [(k, v) for k, v in params if k != "_count"]
    return sorted((v for v in await all_views(ctx) if _matches(v, criteria)), key=lambda v: str(v.get("id")))


async def resolve(ctx: RequestContext, reference: str) -> View:
    """A stored view from ``ViewDefinition/id``, a bare id, or its canonical URL (``|version`` allowed)."""
    text = reference.strip()
    if text.startswith(f"{RESOURCE_TYPE}/") or ("/" not in text and ":" not in text):
        id_ = text.split("/", 1)[1] if "/" in text else text
        stored = await raw_store(ctx.store).read(RESOURCE_TYPE, id_)
        if stored is None or stored.deleted:
            raise FhirError(
                404, f"ViewDefinition/{id_} is not known", code="not-found", expression=["viewReference"]
            )
        return check_view(orjson.loads(stored.body))
    url, _, version = text.partition("|")
    for view in await all_views(ctx):
        if view.get("url") == url and (not version or view.get("version") == version):
            return check_view(view)
    raise FhirError(
        404, f"No ViewDefinition has the url {text}", code="not-found", expression=["viewReference"]
    )


def _parse(body: bytes) -> dict[str, Any]:
    resource = fhirjson.parse(body)
    if not isinstance(resource, dict):
        raise FhirError(400, "The body must be a JSON object holding a ViewDefinition", code="structure")
    if resource.get("resourceType") != RESOURCE_TYPE:
        raise FhirError(
            400,
            f"The body is a {resource.get('resourceType')!r}, not a ViewDefinition",
            expression=["resourceType"],
        )
    return resource


def _require_admin(ctx: RequestContext) -> None:
    guard = ctx.extras.get("guard")
    if guard is not None and not guard.unrestricted():
        raise FhirError(
            403, "ViewDefinitions are server configuration: only admin clients write them", code="forbidden"
        )


async def write(ctx: RequestContext, id_: str | None, body: bytes) -> tuple[StoredResource, bool]:
    """Create (``id_`` None) or update a ViewDefinition; returns (stored, created)."""
    _require_admin(ctx)
    resource = _parse(body)
    check_view(resource)
    store = raw_store(ctx.store)
    async with store.transaction() as tx:
        current = await tx.read(RESOURCE_TYPE, id_) if id_ else None
        if id_ is not None and resource.get("id") not in (None, id_):
            raise FhirError(
                400, f"The body's id {resource.get('id')!r} differs from the URL's {id_!r}", expression=["id"]
            )
        created = current is None or current.deleted
        stored = await writes.write_version(
            tx,
            RESOURCE_TYPE,
            id_ or writes.new_id(),
            resource,
            None,
            current=current,
            method="POST" if id_ is None else "PUT",
        )
    return stored, created


async def delete(ctx: RequestContext, id_: str) -> None:
    _require_admin(ctx)
    store = raw_store(ctx.store)
    async with store.transaction() as tx:
        current = await tx.read(RESOURCE_TYPE, id_)
        if current is not None and not current.deleted:
            await writes.delete_version(tx, current)
