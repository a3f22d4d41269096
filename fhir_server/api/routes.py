"""The FHIR REST routes: one dispatcher that reads the URL shape and calls the interaction.

FHIR URLs overlap (``[type]/[id]``, ``[type]/_search``, ``[type]/$op``, ``[type]/[id]/[compartment
type]``), so a single catch-all route splits the path and picks the interaction by shape and method,
which also makes 404 (unknown type) and 405 (unsupported method) answers uniform.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server import definitions, fhirjson
from fhir_server.api import hosted, limits, negotiation
from fhir_server.api.negotiation import FHIR_JSON
from fhir_server.api.responses import (
    error_response,
    fhir_response,
    http_date,
    not_modified,
    outcome_response,
)
from fhir_server.api.urls import base_url
from fhir_server.config import Settings
from fhir_server.interactions import create, delete, history, offload, patch, read, shaping, update, writes
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.interactions.results import Outcome
from fhir_server.observability.middleware import note_caller

_GENERAL = {"_format", "_pretty"}
_COMPARTMENT_TYPES = {"Patient", "Encounter", "RelatedPerson", "Practitioner", "Device"}


class FhirRequest:
    """The parts of an HTTP request the interactions need, parsed once."""

    def __init__(self, request: Request, segments: list[str]) -> None:
        self.http = request
        self.settings: Settings = request.app.state.settings
        self._depth_checked = False
        self.large_input = offload.LargeInput()
        self.method = request.method
        self.segments = segments
        self.params: list[tuple[str, str]] = request.query_params.multi_items()
        self.query_string: str = request.url.query
        values = dict(self.params)
        # _pretty is applied once, to the finished response (``handle``): off the event loop when large.
        self.wants_pretty = values.get("_pretty", "false").lower() == "true"
        self.pretty = False
        self.format = values.get("_format")
        prefer = request.headers.get("prefer", "")
        self.prefer: dict[str, str] = {}
        for part in prefer.replace(";", ",").split(","):
            key, _, value = part.strip().partition("=")
            if key:
                self.prefer[key.lower()] = value.strip().strip('"')

    def search_params(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.params if k not in _GENERAL]

    def header(self, name: str) -> str | None:
        return self.http.headers.get(name)

    async def body(self, max_bytes: int) -> bytes:
        """The body (read once, within the size and time limits); a JSON body also within the depth limit."""
        data = await limits.read_body(self.http, self.settings, max_bytes)
        self.large_input.note(len(data))
        if not self._depth_checked and negotiation.is_json(self.header("content-type")):
            await offload.run(len(data), limits.check_json_depth, data, self.settings)
            self._depth_checked = True
        return data

    async def resource_body(self, ctx: RequestContext) -> bytes:
        negotiation.check_body_type(self.header("content-type"))
        data = fhirjson.without_bom(await self.body(ctx.settings.max_body_bytes))
        if not data.strip():
            raise FhirError(400, "The request needs a FHIR resource in its body", code="required")
        return data


def _context(request: Request, fhir: FhirRequest) -> RequestContext:
    state = request.app.state
    settings = state.settings
    ctx = RequestContext(
        store=state.store,
        settings=settings,
        base_url=base_url(request, settings),
        prefer_return=fhir.prefer.get("return"),
        prefer_handling=fhir.prefer.get("handling"),
    )
    ctx.extras["request"] = fhir
    return ctx


def _not_allowed(method: str, allowed: str) -> FhirError:
    return FhirError(
        405,
        f"{method} is not allowed here (allowed: {allowed})",
        code="not-supported",
        headers={"Allow": allowed},
    )


async def _respond(
    fhir: FhirRequest,
    ctx: RequestContext,
    outcome: Outcome,
    *,
    shape_type: str | None = None,
    default_text: str = "The request succeeded",
) -> Response:
    stored = outcome.stored
    if (
        fhir.method in ("GET", "HEAD")
        and outcome.status == 200
        and stored is not None
        and not stored.deleted
        and not_modified(
            fhir.header("if-none-match"),
            fhir.header("if-modified-since"),
            stored.version,
            stored.last_updated,
        )
    ):
        headers = {"ETag": f'W/"{stored.version}"', "Last-Modified": http_date(stored.last_updated)}
        return fhir_response(None, 304, headers)
    shaped = None
    if shape_type and outcome.stored is not None and not outcome.stored.deleted:
        values = dict(fhir.params)
        summary = shaping.check_summary(values.get("_summary"))
        elements = shaping.elements_param(values.get("_elements"))
        if summary or elements:
            shaped = shaping.shape(outcome.stored.body, shape_type, summary, elements)
    return outcome_response(
        outcome,
        prefer_return=ctx.prefer_return,
        pretty=fhir.pretty,
        shaped_body=shaped,
        default_text=default_text,
    )


async def _patch_body(fhir: FhirRequest, ctx: RequestContext) -> tuple[patch.PatchFormat, Any]:
    kind = negotiation.check_body_type(fhir.header("content-type"), allow_patch=True)
    data = await fhir.body(ctx.settings.max_body_bytes)
    if not data.strip():
        raise FhirError(400, "PATCH needs a body", code="required")
    parsed = fhirjson.parse(data)
    if kind == negotiation.JSON_PATCH:
        return "json-patch", parsed
    if isinstance(parsed, dict) and parsed.get("resourceType") == "Parameters":
        return "fhirpath-patch", parsed
    if isinstance(parsed, list):
        return "json-patch", parsed
    raise FhirError(
        415,
        "PATCH takes application/json-patch+json, or a FHIRPath Patch Parameters resource",
        code="not-supported",
    )


async def _search_params(fhir: FhirRequest, ctx: RequestContext) -> list[tuple[str, str]]:
    """Query parameters, plus form-encoded body parameters for POST _search."""
    params = fhir.search_params()
    if fhir.method == "POST":
        kind = negotiation.check_body_type(fhir.header("content-type"), allow_form=True)
        if kind != negotiation.FORM:
            raise FhirError(
                415, "POST _search takes application/x-www-form-urlencoded parameters", code="not-supported"
            )
        data = await fhir.body(ctx.settings.max_query_length)
        try:
            form = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FhirError(400, "The form body of POST _search is not UTF-8", code="structure") from None
        params += [(k, v) for k, v in parse_qsl(form, keep_blank_values=True) if k not in _GENERAL]
    return params


async def _search(
    fhir: FhirRequest,
    ctx: RequestContext,
    resource_type: str | None,
    compartment: tuple[str, str] | None = None,
) -> Response:
    from fhir_server.interactions.search import search

    params = await _search_params(fhir, ctx)
    bundle = await search(ctx, resource_type, params, compartment=compartment)
    return fhir_response(bundle, pretty=fhir.pretty)


async def _operation(
    fhir: FhirRequest, ctx: RequestContext, name: str, resource_type: str | None, id_: str | None
) -> Response:
    from fhir_server.api.operations import run_operation

    return await run_operation(fhir, ctx, name, resource_type, id_)


def _metadata(fhir: FhirRequest, ctx: RequestContext) -> Response:
    """``GET /metadata``: the CapabilityStatement (``mode=full``, the default, or ``normative``) or, with
    ``mode=terminology``, the TerminologyCapabilities; ``_summary`` and ``_elements`` apply."""
    values = dict(fhir.params)
    mode = values.get("mode", "full")
    if mode in ("full", "normative"):
        from fhir_server.api.capability import capability_statement

        body = capability_statement(ctx)
    elif mode == "terminology":
        from fhir_server.terminology.capabilities import terminology_capabilities

        body = terminology_capabilities(ctx.base_url)
    else:
        raise FhirError(
            400, f"mode must be full, normative or terminology, not '{mode}'", expression=["mode"]
        )
    summary = shaping.check_summary(values.get("_summary"))
    elements = shaping.elements_param(values.get("_elements"))
    if summary == "true" and not elements:
        body = shaping.deep_summary(body, body["resourceType"])
    content = orjson.dumps(body)
    if (summary and summary != "true") or elements:
        content = shaping.shape(content, body["resourceType"], summary, elements)
    return fhir_response(content, pretty=fhir.pretty)


async def _type_level(fhir: FhirRequest, ctx: RequestContext, resource_type: str) -> Response:
    method = fhir.method
    if method in ("GET", "HEAD"):
        return await _search(fhir, ctx, resource_type)
    if method == "POST":
        body = await fhir.resource_body(ctx)
        outcome = await create.create(ctx, resource_type, body, if_none_exist=fhir.header("if-none-exist"))
        return await _respond(fhir, ctx, outcome)
    if method == "PUT":
        _require_criteria(fhir, "Conditional update")
        body = await fhir.resource_body(ctx)
        outcome = await update.conditional_update(
            ctx, resource_type, fhir.query_string, body, if_match=fhir.header("if-match")
        )
        return await _respond(fhir, ctx, outcome)
    if method == "DELETE":
        _require_criteria(fhir, "Conditional delete")
        outcome = await delete.conditional_delete(ctx, resource_type, fhir.query_string)
        return await _respond(fhir, ctx, outcome)
    if method == "PATCH":
        _require_criteria(fhir, "Conditional patch")
        kind, body = await _patch_body(fhir, ctx)
        outcome = await patch.conditional_patch(
            ctx, resource_type, fhir.query_string, kind, body, if_match=fhir.header("if-match")
        )
        return await _respond(fhir, ctx, outcome)
    raise _not_allowed(method, "GET, POST, PUT, DELETE, PATCH")


def _require_criteria(fhir: FhirRequest, what: str) -> None:
    if not fhir.search_params():
        raise FhirError(400, f"{what} needs search criteria in the query string", code="required")


async def _instance_level(fhir: FhirRequest, ctx: RequestContext, resource_type: str, id_: str) -> Response:
    method = fhir.method
    if method in ("GET", "HEAD"):
        outcome = await read.read(ctx, resource_type, id_)
        return await _respond(fhir, ctx, outcome, shape_type=resource_type)
    if method == "PUT":
        body = await fhir.resource_body(ctx)
        outcome = await update.update(ctx, resource_type, id_, body, if_match=fhir.header("if-match"))
        return await _respond(fhir, ctx, outcome)
    if method == "DELETE":
        outcome = await delete.delete(ctx, resource_type, id_, if_match=fhir.header("if-match"))
        return await _respond(fhir, ctx, outcome)
    if method == "PATCH":
        kind, body = await _patch_body(fhir, ctx)
        outcome = await patch.patch(ctx, resource_type, id_, kind, body, if_match=fhir.header("if-match"))
        return await _respond(fhir, ctx, outcome)
    raise _not_allowed(method, "GET, PUT, DELETE, PATCH")


def _only(fhir: FhirRequest, *methods: str) -> None:
    if fhir.method not in methods:
        raise _not_allowed(fhir.method, ", ".join(methods))


async def _dispatch(fhir: FhirRequest, ctx: RequestContext) -> Response:
    seg = fhir.segments
    if not seg:
        if fhir.method == "POST":
            from fhir_server.interactions.bundle import process_bundle

            body = await fhir.resource_body(ctx)
            return fhir_response(await process_bundle(ctx, body), pretty=fhir.pretty)
        _only(fhir, "GET", "POST")
        return await _search(fhir, ctx, None)
    head = seg[0]
    if head == "_export":  # Bulk Data status and file URLs
        from fhir_server.api import export

        return await export.handle(fhir, ctx, seg[1:])
    if head in hosted.TYPES:
        return await hosted.dispatch(fhir, ctx, _operation)
    if len(seg) == 1:
        if head == "metadata":
            _only(fhir, "GET")
            return _metadata(fhir, ctx)
        if head == "_history":
            _only(fhir, "GET")
            return fhir_response(
                (await history.history(ctx, None, None, fhir.search_params())).body, pretty=fhir.pretty
            )
        if head == "_search":
            _only(fhir, "GET", "POST")
            return await _search(fhir, ctx, None)
        if head.startswith("$"):
            return await _operation(fhir, ctx, head[1:], None, None)
        writes.check_type_known(head)
        return await _type_level(fhir, ctx, head)
    writes.check_type_known(head)
    second = seg[1]
    if len(seg) == 2:
        if second == "_search":
            _only(fhir, "GET", "POST")
            return await _search(fhir, ctx, head)
        if second == "_history":
            _only(fhir, "GET")
            return fhir_response(
                (await history.history(ctx, head, None, fhir.search_params())).body, pretty=fhir.pretty
            )
        if second.startswith("$"):
            return await _operation(fhir, ctx, second[1:], head, None)
        return await _instance_level(fhir, ctx, head, second)
    third = seg[2]
    if len(seg) == 3:
        if third == "_history":
            _only(fhir, "GET")
            return fhir_response(
                (await history.history(ctx, head, second, fhir.search_params())).body, pretty=fhir.pretty
            )
        if third.startswith("$"):
            return await _operation(fhir, ctx, third[1:], head, second)
        if head in _COMPARTMENT_TYPES and (third == "*" or definitions.is_resource_type(third)):
            _only(fhir, "GET")
            return await _search(fhir, ctx, None if third == "*" else third, compartment=(head, second))
    if len(seg) == 4 and third == "_history":
        _only(fhir, "GET")
        outcome = await read.vread(ctx, head, second, seg[3])
        return await _respond(fhir, ctx, outcome, shape_type=head)
    raise FhirError(404, f"No FHIR endpoint at '{'/'.join(seg)}'", code="not-found")


async def handle(request: Request) -> Response:
    """Entry point for every request under the FHIR base."""
    try:
        limits.check_head(request, request.app.state.settings)
    except FhirError as error:
        return error_response(error)
    path = request.path_params.get("path", "")
    segments = [s for s in path.split("/") if s]
    fhir = FhirRequest(request, segments)
    ctx: RequestContext | None = None
    response: Response | None = None
    try:
        from fhir_server.api.operations import format_is_parameter

        if not format_is_parameter(segments):
            negotiation.check_format(fhir.format, request.headers.get("accept"))
        ctx = _context(request, fhir)
        hook: Callable[[FhirRequest, RequestContext], Awaitable[None]] | None = getattr(
            request.app.state, "before_interaction", None
        )
        if hook is not None:
            await hook(fhir, ctx)
        response = await _dispatch(fhir, ctx)
    except FhirError as error:
        response = error_response(error, pretty=fhir.pretty)
    finally:
        note_caller(request.scope, ctx.principal if ctx is not None else None)  # for the access log
        # Audit (fhir_server.security) sees every outcome; None means an unexpected failure (500).
        try:
            after = getattr(request.app.state, "after_interaction", None)
            if after is not None:
                await after(fhir, ctx, response)
        finally:
            fhir.large_input.release()
    assert response is not None
    if request.method == "HEAD":
        response.body = b""
    elif fhir.wants_pretty:
        await _prettify(response)
    return response


async def _prettify(response: Response) -> None:
    body = getattr(response, "body", None)  # a streamed answer has none
    if not body or not (response.media_type or "").startswith(FHIR_JSON):
        return
    response.body = await offload.run(len(response.body), fhirjson.pretty, bytes(response.body))
    response.headers["content-length"] = str(len(response.body))
