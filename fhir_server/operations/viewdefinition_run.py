"""``$viewdefinition-run`` (SQL on FHIR v2; ``$run`` in its 2.0 release): a view's rows as a table.

Levels: ``[base]/$viewdefinition-run`` (the R4 form, with ``viewReference`` or ``viewResource``),
``ViewDefinition/$viewdefinition-run`` and ``ViewDefinition/[id]/$viewdefinition-run``, and the same two
as ``$run``. Parameters: ``_format`` (csv, ndjson, json, parquet), ``header``, ``viewReference``,
``viewResource``, ``patient``, ``_since``, ``_limit`` and inline ``resource``. The rows come from what
the caller may see; the work is in ``fhir_server.analytics.views``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from fhir_server.analytics.views import library
from fhir_server.analytics.views.output import FORMATS
from fhir_server.analytics.views.run import RunOptions, run_view
from fhir_server.interactions.errors import FhirError, bad_request
from fhir_server.operations.registry import OperationRequest, OperationResult, parameter_values

_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_KNOWN = {
    "_format",
    "header",
    "viewReference",
    "viewResource",
    "patient",
    "group",
    "_since",
    "_limit",
    "resource",
    "source",
}


def _one(parameters: dict[str, Any], name: str) -> Any:
    values = parameter_values(parameters, name)
    if len(values) > 1:
        raise bad_request(f"{name} may be given once", [name])
    return values[0] if values else None


def _format(request: OperationRequest) -> str:
    value = _one(request.parameters, "_format")
    if value is None:
        accept = request.headers.get("accept", "")
        for part in accept.split(","):
            media = part.split(";")[0].strip().lower()
            if media in FORMATS and media not in ("application/json",):
                return FORMATS[media][0]
        return "ndjson"
    if not isinstance(value, str) or value.strip().lower().replace(" ", "+") not in FORMATS:
        raise bad_request(f"_format must be one of csv, ndjson, json, parquet (not {value!r})", ["_format"])
    return FORMATS[value.strip().lower().replace(" ", "+")][0]


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    raise bad_request(f"{name} must be true or false", [name])


def _patients(parameters: dict[str, Any]) -> list[str]:
    out = []
    for value in parameter_values(parameters, "patient"):
        text = value.get("reference") if isinstance(value, dict) else value
        if not isinstance(text, str) or not text.strip():
            raise bad_request("patient must be a Patient reference or id", ["patient"])
        out.append(text.strip().removeprefix("Patient/"))
    return out


def _inline_resources(parameters: dict[str, Any]) -> list[dict[str, Any]] | None:
    values = parameter_values(parameters, "resource")
    if not values:
        return None
    out = []
    for value in values:
        if isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise bad_request(
                    "resource must be a FHIR resource (or its JSON text)", ["resource"]
                ) from None
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            raise bad_request("resource must be a FHIR resource", ["resource"])
        out.append(value)
    return out


async def run(request: OperationRequest) -> OperationResult:
    ctx, parameters = request.context, request.parameters
    _refuse_aggregate_only(request)
    unknown = sorted({p.get("name") for p in parameters.get("parameter", [])} - _KNOWN)
    if unknown:
        raise bad_request(f"Unknown parameter '{unknown[0]}' for ${request.name}", [str(unknown[0])])
    if parameter_values(parameters, "group") or parameter_values(parameters, "source"):
        raise FhirError(
            400,
            "group and source are not supported by this server: name the children with patient",
            code="not-supported",
            expression=["group" if parameter_values(parameters, "group") else "source"],
        )
    inline, reference = _one(parameters, "viewResource"), _one(parameters, "viewReference")
    if request.body_resource is not None:
        inline = inline or request.body_resource
    given = [x for x in (inline, reference, request.id) if x is not None]
    if len(given) != 1:
        raise bad_request(
            "Name exactly one view: the ViewDefinition in the URL, viewReference or viewResource",
            ["viewReference"],
        )
    if inline is not None:
        view = library.check_view(inline)
    elif reference is not None:
        text = reference.get("reference") if isinstance(reference, dict) else reference
        if not isinstance(text, str):
            raise bad_request("viewReference must be a reference or a canonical URL", ["viewReference"])
        view = await library.resolve(ctx, text)
    else:
        assert request.id is not None
        view = await library.resolve(ctx, f"ViewDefinition/{request.id}")
    options = RunOptions(
        fmt=_format(request), patients=_patients(parameters), resources=_inline_resources(parameters)
    )
    header = _one(parameters, "header")
    if header is not None:
        options.header = _boolean(header, "header")
    limit = _one(parameters, "_limit")
    if limit is not None:
        if isinstance(limit, bool) or not re.fullmatch(r"[0-9]{1,9}", str(limit)) or int(limit) < 1:
            raise bad_request("_limit must be a positive integer", ["_limit"])
        options.limit = int(limit)
    since = _one(parameters, "_since")
    if since is not None:
        since = str(since).strip().replace(" ", "+")
        if not _INSTANT.match(since):
            raise bad_request("_since must be a FHIR instant (e.g. 2024-01-31T10:00:00+07:00)", ["_since"])
        options.since = since
    body = await run_view(ctx, view, options)
    media = {fmt: media for fmt, media in FORMATS.values()}[options.fmt]
    return OperationResult(raw=body, headers={"Content-Type": media})


def _refuse_aggregate_only(request: OperationRequest) -> None:
    """A view gives one row per resource: roles that see aggregates only never get one."""
    principal = request.context.principal
    role = getattr(principal, "role", None)
    if role is not None and getattr(role, "aggregates_only", False):
        raise FhirError(
            403,
            f"Role '{role.name}' sees aggregated figures only; a view gives one row per record",
            code="forbidden",
        )
