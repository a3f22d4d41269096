"""Transaction and batch bundles (POST [base]).

A transaction runs in one store transaction: identities are resolved first (new ids for creates,
searches for conditional creates, updates and references), every reference to a local ``fullUrl``
is rewritten in the entries' raw JSON, then entries run in the spec's order (DELETE, POST, PUT/PATCH,
GET/HEAD). Any failure rolls everything back and names the entry. A batch runs each entry on its own.
Entry bodies stay byte-exact apart from rewritten references and server-set ``id``/``meta``.
"""

from __future__ import annotations

import asyncio
import base64
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_server import fhirjson
from fhir_server.interactions import conditional, offload, writes
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.create import create_in
from fhir_server.interactions.delete import conditional_delete_in, delete_in
from fhir_server.interactions.errors import FhirError
from fhir_server.interactions.patch import PatchFormat, patch_in
from fhir_server.interactions.results import Outcome, etag
from fhir_server.interactions.update import parse_if_match, update_in
from fhir_server.storage.base import StoredResource, StoreTransaction

_ENTRIES_PER_PAUSE = 8
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_REFERENCE = re.compile(rb'("reference"\s*:\s*")((?:[^"\\]|\\.)*)(")')
_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    422: "Unprocessable Entity",
}


@dataclass
class _Entry:
    index: int
    method: str
    url: str
    full_url: str | None
    raw: bytes | None  # the entry's resource, byte-exact
    request: dict[str, Any]
    resource_type: str = ""
    id: str | None = None  # the id this entry writes to, once resolved
    query: str | None = None  # conditional criteria of a PUT/DELETE/PATCH url
    creates: bool = False  # a resolved conditional/plain create that must make a new resource
    existing: StoredResource | None = None  # a conditional create that matched
    response: dict[str, Any] = field(default_factory=dict)


def _fail(entry: _Entry | int, text: str, status: int = 400, code: str = "invalid") -> FhirError:
    index = entry if isinstance(entry, int) else entry.index
    return FhirError(
        status, f"Bundle.entry[{index}]: {text}", code=code, expression=[f"Bundle.entry[{index}]"]
    )


def _status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, '')}".strip()


def _relative(ctx: RequestContext, url: str, index: int) -> str:
    """An entry's request URL relative to the base; an absolute URL must point at this server."""
    if url.startswith(("http://", "https://")):
        if not ctx.base_url or not url.startswith(ctx.base_url + "/"):
            raise _fail(index, f"the request url '{url}' points at another server", code="not-supported")
        url = url[len(ctx.base_url) + 1 :]
    return url.lstrip("/")


_REQUEST_STRINGS = ("method", "url", "ifNoneMatch", "ifModifiedSince", "ifMatch", "ifNoneExist")


def _check_strings(index: int, obj: dict[str, Any], names: tuple[str, ...], prefix: str) -> None:
    """The entry members the processor reads as text must be JSON strings (400 otherwise)."""
    for name in names:
        if name in obj and not isinstance(obj[name], str):
            raise FhirError(
                400,
                f"Bundle.entry[{index}].{prefix}{name} must be a JSON string",
                code="structure",
                expression=[f"Bundle.entry[{index}].{prefix}{name}"],
            )


def _parse_entries(ctx: RequestContext, body: bytes, bundle: dict[str, Any]) -> list[_Entry]:
    raw_entries = fhirjson.member(body, "entry")
    items = fhirjson.array_items(raw_entries) if raw_entries else []
    entries: list[_Entry] = []
    seen: set[str] = set()
    for index, (parsed, raw) in enumerate(zip(bundle.get("entry") or [], items, strict=True)):
        if not isinstance(parsed, dict):
            raise _fail(index, "an entry must be a JSON object", code="structure")
        request = parsed.get("request")
        if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
            raise _fail(index, "the entry has no request with a method and url", code="required")
        _check_strings(index, request, _REQUEST_STRINGS, "request.")
        _check_strings(index, parsed, ("fullUrl",), "")
        method = request["method"].upper()
        if method not in _ORDER:
            raise _fail(index, f"unsupported request method '{request['method'][:20]}'")
        full_url = parsed.get("fullUrl")
        if full_url is not None:
            if full_url in seen:
                raise _fail(index, f"the fullUrl '{full_url}' appears in more than one entry")
            seen.add(full_url)
        resource = parsed.get("resource")
        if "resource" in parsed and not isinstance(resource, dict):
            raise _fail(index, "the entry's resource must be a JSON object", code="structure")
        resource_raw = fhirjson.member(raw, "resource") if resource is not None else None
        if method in ("POST", "PUT") and resource_raw is None:
            raise _fail(index, f"a {method} entry needs a resource", code="required")
        entry = _Entry(index, method, _relative(ctx, request["url"], index), full_url, resource_raw, request)
        if (
            isinstance(resource, dict)
            and resource.get("resourceType") == "Bundle"
            and resource.get("type") in ("transaction", "batch")
            and method in ("POST", "PUT")
        ):
            raise _fail(index, "a transaction or batch cannot be nested inside another bundle")
        entries.append(entry)
    return entries


def _split_url(entry: _Entry) -> tuple[str, str | None, str | None]:
    """(type, id or None, query or None) of an entry's request url."""
    path, _, query = entry.url.partition("?")
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise _fail(entry, f"the request url '{entry.url}' names no resource type")
    writes.check_type_known(parts[0])
    return parts[0], (parts[1] if len(parts) > 1 else None), (query or None)


class _Identities:
    """fullUrl -> Type/id for every entry that creates or updates, and resolved conditional references."""

    def __init__(self) -> None:
        self.targets: dict[str, str] = {}

    def add(self, entry: _Entry) -> None:
        if entry.full_url and entry.id:
            self.targets[entry.full_url] = f"{entry.resource_type}/{entry.id}"
            if entry.full_url.startswith(("http://", "https://")):
                # An absolute fullUrl may also be referenced relatively ("Patient/1").
                tail = "/".join(entry.full_url.rstrip("/").split("/")[-2:])
                self.targets.setdefault(tail, self.targets[entry.full_url])


async def _resolve(
    ctx: RequestContext, tx: StoreTransaction, entries: list[_Entry], ids: _Identities
) -> None:
    for entry in entries:
        await _pause(entry.index)
        if entry.method in ("GET", "HEAD"):
            continue
        resource_type, id_, query = _split_url(entry)
        entry.resource_type = resource_type
        if entry.raw is not None and entry.method in ("POST", "PUT"):
            declared = orjson.loads(entry.raw).get("resourceType") if entry.raw else None
            if declared != resource_type:
                raise _fail(entry, f"the resource is a {declared} but the url names {resource_type}")
        if entry.method == "POST":
            if id_ is not None:
                raise _fail(entry, "POST goes to a type ('Patient'), not to an id")
            if_none_exist = entry.request.get("ifNoneExist")
            if if_none_exist:
                found = await conditional.matches(ctx, tx, resource_type, if_none_exist)
                entry.existing = await _single(tx, entry, found, "ifNoneExist", if_none_exist)
            entry.id = entry.existing.id if entry.existing else writes.new_id()
            entry.creates = entry.existing is None
        elif entry.method == "PUT":
            if query:
                found = await conditional.matches(ctx, tx, resource_type, query)
                match = await _single(tx, entry, found, "conditional update", query)
                body_id = orjson.loads(entry.raw or b"{}").get("id")
                entry.id = match.id if match else (body_id or writes.new_id())
                entry.creates = match is None and not body_id  # a create under a server-assigned id
                entry.query = query
            elif id_:
                writes.check_id(id_, f"Bundle.entry[{entry.index}].request.url")
                entry.id = id_
            else:
                raise _fail(entry, "PUT needs an id or search criteria in its url")
        else:  # DELETE, PATCH
            entry.id, entry.query = id_, query
            if not id_ and not query:
                raise _fail(entry, f"{entry.method} needs an id or search criteria in its url")
        ids.add(entry)


async def _single(
    tx: StoreTransaction, entry: _Entry, found: list[StoredResource], what: str, query: str
) -> StoredResource | None:
    if len(found) > 1:
        detail = await conditional.duplicates_detail(tx, entry.resource_type, query, found)
        raise _fail(
            entry,
            f"{what}: {detail}" if detail else f"{what} criteria match {len(found)} resources",
            status=412,
            code="multiple-matches",
        )
    return found[0] if found else None


async def _rewrite(
    ctx: RequestContext, tx: StoreTransaction, entry: _Entry, ids: _Identities, cache: dict[str, str]
) -> bytes | None:
    """The entry's resource with local and conditional references replaced by Type/id."""
    raw = entry.raw
    if raw is None:
        return None
    pending: dict[bytes, bytes] = {}
    for match in _REFERENCE.finditer(raw):
        value = orjson.loads(b'"' + match.group(2) + b'"')
        if value in ids.targets:
            pending[match.group(2)] = ids.targets[value].encode()
        elif value.startswith(("urn:uuid:", "urn:oid:")):
            raise _fail(entry, f"the reference '{value}' points at no entry of this bundle", code="not-found")
        elif "?" in value and not value.startswith(("http://", "https://", "#")):
            if value not in cache:
                cache[value] = await _conditional_reference(ctx, tx, entry, value)
            pending[match.group(2)] = cache[value].encode()
    if not pending:
        return raw
    return _REFERENCE.sub(lambda m: m.group(1) + pending.get(m.group(2), m.group(2)) + m.group(3), raw)


async def _conditional_reference(ctx: RequestContext, tx: StoreTransaction, entry: _Entry, value: str) -> str:
    resource_type, _, query = value.partition("?")
    writes.check_type_known(resource_type)
    found = await conditional.matches(ctx, tx, resource_type, query)
    if len(found) != 1:
        detail = await conditional.duplicates_detail(tx, resource_type, query, found)
        raise _fail(
            entry,
            f"the conditional reference '{value}': {detail}"
            if detail
            else f"the conditional reference '{value}' matches {len(found)} resources;"
            " it must match exactly one",
            status=412 if found else 404,
            code="not-found" if not found else "multiple-matches",
        )
    return f"{resource_type}/{found[0].id}"


def _patch_body(entry: _Entry) -> tuple[PatchFormat, Any]:
    if entry.raw is None:
        raise _fail(
            entry, "a PATCH entry needs a Binary (JSON Patch) or Parameters (FHIRPath Patch) resource"
        )
    resource = orjson.loads(entry.raw)
    if resource.get("resourceType") == "Parameters":
        return "fhirpath-patch", resource
    if resource.get("resourceType") == "Binary" and "json-patch" in str(resource.get("contentType", "")):
        data = resource.get("data", "")
        try:
            if not isinstance(data, str):
                raise ValueError("Binary.data is not a string")
            return "json-patch", fhirjson.parse(base64.b64decode(data, validate=True))
        except (ValueError, FhirError):
            raise _fail(entry, "the Binary's data is not a base64-encoded JSON Patch") from None
    raise _fail(entry, "a PATCH entry needs a Binary (application/json-patch+json) or Parameters resource")


async def _run_write(ctx: RequestContext, tx: StoreTransaction, entry: _Entry, body: bytes | None) -> Outcome:
    expected = parse_if_match(entry.request.get("ifMatch"))
    if entry.method == "POST":
        if entry.existing is not None:
            return Outcome(200, stored=entry.existing)
        assert body is not None
        return await create_in(
            ctx, tx, entry.resource_type, writes.parse_resource(body, entry.resource_type), body, id_=entry.id
        )
    if entry.method == "PUT":
        assert body is not None and entry.id is not None
        resource = writes.parse_resource(body, entry.resource_type)
        if entry.request.get("ifNoneMatch") == "*":
            current = await tx.read(entry.resource_type, entry.id)
            if current is not None and not current.deleted:
                raise _fail(entry, "ifNoneMatch '*' but the resource exists", status=412, code="conflict")
        if entry.query and entry.creates:
            return await create_in(ctx, tx, entry.resource_type, resource, body, id_=entry.id)
        if entry.query:
            if resource.get("id") not in (None, entry.id):
                raise _fail(
                    entry,
                    f"the criteria match {entry.resource_type}/{entry.id} but the body's id is "
                    f"'{resource.get('id')}'",
                )
            return await update_in(
                ctx,
                tx,
                entry.resource_type,
                entry.id,
                resource,
                body,
                expected_version=expected,
                check_body_id=False,
            )
        return await update_in(
            ctx, tx, entry.resource_type, entry.id, resource, body, expected_version=expected
        )
    if entry.method == "DELETE":
        if entry.query:
            return await conditional_delete_in(ctx, tx, entry.resource_type, entry.query)
        assert entry.id is not None
        return await delete_in(ctx, tx, entry.resource_type, entry.id, expected_version=expected)
    kind, patch = _patch_body(entry)
    if entry.query:
        found = await conditional.matches(ctx, tx, entry.resource_type, entry.query)
        match = await _single(tx, entry, found, "conditional patch", entry.query)
        if match is None:
            raise _fail(
                entry, "no resource matches the conditional patch criteria", status=404, code="not-found"
            )
        entry.id = match.id
    assert entry.id is not None
    return await patch_in(ctx, tx, entry.resource_type, entry.id, kind, patch, expected_version=expected)


class _TransactionView:
    """A store-shaped view that reads and searches through an open transaction (GET entries)."""

    def __init__(self, store: Any, tx: StoreTransaction) -> None:
        self._store, self._tx = store, tx

    async def read(self, resource_type: str, id_: str) -> StoredResource | None:
        return await self._tx.read(resource_type, id_)

    async def search(self, query: Any) -> Any:
        return await self._tx.search(query)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def _run_read(ctx: RequestContext, entry: _Entry) -> dict[str, Any]:
    """A GET/HEAD entry: read, vread, history or search, as the HTTP API would answer it."""
    from fhir_server.interactions import history, read
    from fhir_server.interactions.search import search

    path, _, query = entry.url.partition("?")
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in ("_format", "_pretty")]
    parts = [p for p in path.split("/") if p]
    if (parts and parts[0].startswith("$")) or (len(parts) > 1 and parts[-1].startswith("$")):
        raise _fail(entry, "operations cannot run as bundle entries", code="not-supported")
    if not parts or parts[-1] == "_search" or len(parts) == 1:
        resource_type = parts[0] if parts and parts[0] != "_search" else None
        bundle = await search(ctx, resource_type, params)
        return {"resource": bundle, "response": {"status": "200 OK"}}
    if parts[-1] == "_history":
        outcome = await history.history(
            ctx, parts[0] if len(parts) > 1 else None, parts[1] if len(parts) > 2 else None, params
        )
        return {"resource": outcome.body, "response": {"status": "200 OK"}}
    if len(parts) == 4 and parts[2] == "_history":
        outcome = await read.vread(ctx, parts[0], parts[1], parts[3])
    elif len(parts) == 2:
        outcome = await read.read(ctx, parts[0], parts[1])
    else:
        raise _fail(entry, f"unsupported GET url '{entry.url}'", code="not-supported")
    stored = outcome.stored
    assert stored is not None
    none_match = entry.request.get("ifNoneMatch")
    if none_match and parse_if_match(none_match) == stored.version:
        return {"response": {"status": "304 Not Modified", "etag": etag(stored.version)}}
    since = entry.request.get("ifModifiedSince")
    if since and stored.last_updated <= _normalise_instant(entry, since):
        return {"response": {"status": "304 Not Modified", "etag": etag(stored.version)}}
    return {
        "resource": orjson.Fragment(stored.body),
        "response": {"status": "200 OK", "etag": etag(stored.version), "lastModified": stored.last_updated},
    }


def _normalise_instant(entry: _Entry, value: str) -> str:
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(entry, f"ifModifiedSince '{value}' is not an instant") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _write_response(ctx: RequestContext, entry: _Entry, outcome: Outcome) -> dict[str, Any]:
    response: dict[str, Any] = {"status": _status_line(outcome.status)}
    item: dict[str, Any] = {}
    stored = outcome.stored
    if stored is not None:
        if not stored.deleted:
            item["fullUrl"] = f"{ctx.base_url}/{stored.resource_type}/{stored.id}"
        response["location"] = f"{stored.resource_type}/{stored.id}/_history/{stored.version}"
        response["etag"] = etag(stored.version)
        response["lastModified"] = stored.last_updated
    prefer = ctx.prefer_return
    if prefer == "representation" and stored is not None and not stored.deleted:
        item["resource"] = orjson.Fragment(stored.body)
    if prefer == "OperationOutcome" or (
        outcome.issues
        and prefer != "minimal"
        and any(i.get("severity") in ("warning", "error") for i in outcome.issues)
    ):
        response["outcome"] = outcome.outcome_resource("Done")
    item["response"] = response
    return item


def _check_envelope(ctx: RequestContext, body: bytes | dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    bundle = fhirjson.parse(raw)
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError(
            400, "POST to the base takes a Bundle of type transaction or batch", expression=["resourceType"]
        )
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise FhirError(
            400,
            f"A '{kind}' Bundle cannot be processed at the base; only transaction and batch "
            "can. To store it as a resource, POST it to [base]/Bundle",
            expression=["Bundle.type"],
        )
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise FhirError(400, "Bundle.entry must be an array", code="structure", expression=["Bundle.entry"])
    if len(entries) > ctx.settings.max_bundle_entries:
        raise FhirError(
            413,
            f"The bundle has {len(entries)} entries; the limit is {ctx.settings.max_bundle_entries}",
            code="too-costly",
            expression=["Bundle.entry"],
        )
    return raw, bundle


async def process_bundle(ctx: RequestContext, body: bytes | dict[str, Any]) -> dict[str, Any]:
    """Run a transaction or batch bundle and return its response bundle."""
    size = len(body) if isinstance(body, bytes) else 0
    bundle, entries = await offload.run(size, _envelope_and_entries, ctx, body)
    if bundle["type"] == "transaction":
        responses = await _transaction(ctx, entries)
        kind = "transaction-response"
    else:
        responses = await _batch(ctx, entries)
        kind = "batch-response"
    return {"resourceType": "Bundle", "type": kind, "entry": responses}


def _envelope_and_entries(
    ctx: RequestContext, body: bytes | dict[str, Any]
) -> tuple[dict[str, Any], list[_Entry]]:
    raw, bundle = _check_envelope(ctx, body)
    return bundle, _parse_entries(ctx, raw, bundle)


async def _pause(index: int) -> None:
    """Let other requests run between entries: a bundle of thousands must not hold the loop."""
    if index % _ENTRIES_PER_PAUSE == _ENTRIES_PER_PAUSE - 1:
        await asyncio.sleep(0)


async def _transaction(ctx: RequestContext, entries: list[_Entry]) -> list[dict[str, Any]]:
    from fhir_server.identity.hooks import IdentityConflict

    try:
        return await _run_transaction(ctx, entries)
    except IdentityConflict as conflict:
        raise _identity_error(entries, conflict) from None


def _identity_error(entries: list[_Entry], conflict: Any) -> FhirError:
    """Two entries that write the same child: name both entries (nothing was written)."""
    at = [
        next((e.index for e in entries if e.resource_type == "Patient" and e.id == s), -1)
        for s in conflict.sources
    ]
    if -1 in at:
        return conflict  # type: ignore[no-any-return]
    nid = conflict.identifier
    first, second = sorted(at)
    return FhirError(
        409,
        f"Bundle.entry[{first}] and Bundle.entry[{second}] both write a Patient with {nid.kind.upper()}"
        f" {nid.value} ({nid.system}). One child has one record per agency, so the transaction is refused"
        " rather than making a duplicate; send the child in one entry.",
        code="duplicate",
        expression=[
            f"Bundle.entry[{first}].resource.identifier",
            f"Bundle.entry[{second}].resource.identifier",
        ],
    )


async def _run_transaction(ctx: RequestContext, entries: list[_Entry]) -> list[dict[str, Any]]:
    results: dict[int, dict[str, Any]] = {}
    async with writes.transaction(ctx.store) as tx:
        ids = _Identities()
        await _resolve(ctx, tx, entries, ids)
        announce = getattr(tx, "will_create", None)  # the security layer's store: new Patients are ours
        for entry in entries:
            if announce is not None and entry.creates and entry.id:
                announce(entry.resource_type, entry.id)
        cache: dict[str, str] = {}
        bodies: dict[int, bytes | None] = {}
        for e in entries:
            await _pause(e.index)
            if e.method not in ("GET", "HEAD"):
                bodies[e.index] = await _rewrite(ctx, tx, e, ids, cache)
        for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
            await _pause(entry.index)
            try:
                if entry.method in ("GET", "HEAD"):
                    view = RequestContext(**{**ctx.__dict__, "store": _TransactionView(ctx.store, tx)})
                    results[entry.index] = await _run_read(view, entry)
                    continue
                outcome = await _run_write(ctx, tx, entry, bodies[entry.index])
            except FhirError as error:
                if error.diagnostics.startswith("Bundle.entry["):
                    raise
                raise _entry_error(entry, error) from None
            results[entry.index] = _write_response(ctx, entry, outcome)
    return [results[e.index] for e in entries]


def _entry_error(entry: _Entry, error: FhirError) -> FhirError:
    prefix = f"Bundle.entry[{entry.index}]"
    issues = [
        {
            **issue,
            "diagnostics": f"{prefix}: {issue.get('diagnostics', '')}",
            "expression": [
                f"{prefix}.resource" + ((e.split(".", 1)[1:] and "." + e.split(".", 1)[1]) or "")
                for e in issue.get("expression", [])
            ]
            or [prefix],
        }
        for issue in error.outcome()["issue"]
    ]
    return FhirError(error.status, f"{prefix}: {error.diagnostics}", code=error.code, issues=issues)


async def _batch(ctx: RequestContext, entries: list[_Entry]) -> list[dict[str, Any]]:
    """Each entry in its own transaction; a failure is that entry's response, not the batch's."""
    results: dict[int, dict[str, Any]] = {}
    done = _Identities()  # fullUrls of entries that already ran, for references between entries
    for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
        await _pause(entry.index)
        try:
            if entry.method in ("GET", "HEAD"):
                results[entry.index] = await _run_read(ctx, entry)
                continue
            async with writes.transaction(ctx.store) as tx:
                ids = _Identities()
                await _resolve(ctx, tx, [entry], ids)
                ids.targets = {**done.targets, **ids.targets}
                body = await _rewrite(ctx, tx, entry, ids, {})
                outcome = await _run_write(ctx, tx, entry, body)
            results[entry.index] = _write_response(ctx, entry, outcome)
            done.add(entry)
        except FhirError as error:
            results[entry.index] = {
                "response": {"status": _status_line(error.status), "outcome": error.outcome()}
            }
    return [results[e.index] for e in entries]
