"""A kick-off request read and checked: every parameter of FHIR Bulk Data Access v2 ``$export``.

Parameters arrive as a ``Parameters`` resource (a POST body, or the query string of a GET or of a POST
with an empty body, each value then a ``valueString``). Anything wrong is a 400 naming the parameter;
what we do not support is a 400 too, unless the client sent ``Prefer: handling=lenient``, in which case
it is left out and said so in the export's error file.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

from fhir_server import definitions
from fhir_server.interactions.errors import FhirError
from fhir_server.search.query import parse_search
from fhir_server.search.values import date_range

Level = Literal["system", "patient", "group"]
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
# Parameters of the spec we read; anything else is unsupported.
_KNOWN = frozenset(
    {
        "_outputFormat",
        "_since",
        "_type",
        "_typeFilter",
        "_elements",
        "patient",
        "includeAssociatedData",
        "organizeOutputBy",
        "allowPartialManifests",
        "deidentify",
    }
)
_ASSOCIATED = frozenset({"LatestProvenanceResources", "RelevantProvenanceResources"})
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
_ELEMENT = re.compile(r"^([A-Z][A-Za-z]+\.)?[a-z][A-Za-z0-9]*(\[x\])?$")


@dataclass
class ExportRequest:
    """What to export, as recorded in the job (plain JSON types only)."""

    level: Level
    group_id: str | None = None
    types: list[str] | None = None  # _type, or None: every type the level covers
    since: str | None = None  # normalised FHIR instant
    type_filters: dict[str, list[str]] = field(default_factory=dict)  # type -> query strings
    elements: list[str] | None = None
    patients: list[str] | None = None  # ids from ``patient``
    deidentify: bool | None = None  # None: the role's default
    notes: list[str] = field(default_factory=list)  # what a lenient request had left out

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> ExportRequest:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _bad(message: str, name: str, *, code: str = "invalid") -> FhirError:
    return FhirError(400, message, code=code, expression=[name])


def _strings(values: list[Any], name: str) -> list[str]:
    out = []
    for value in values:
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            out.append(value["reference"])
        elif isinstance(value, str | bool | int):
            out.append(str(value))
        else:
            raise _bad(f"Parameter '{name}' has a value of a type it does not take", name)
    return out


def _values(parameters: dict[str, Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for p in parameters.get("parameter", []) or []:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise _bad("Each parameter needs a name", "Parameters.parameter")
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        if value is None:
            raise _bad(
                f"Parameter '{p['name']}' has no value", f"Parameters.parameter.where(name='{p['name']}')"
            )
        found.setdefault(p["name"], []).append(value)
    return found


def _since(raw: str) -> str:
    if not _INSTANT.match(raw.strip()) or date_range(raw.strip()) is None:
        raise _bad(
            f"_since must be a FHIR instant with a time zone (for example 2024-01-31T00:00:00Z), not '{raw}'",
            "_since",
        )
    return raw.strip()


def level_types(level: Level) -> frozenset[str]:
    """The types a level covers: every type for system exports, the Patient compartment otherwise."""
    if level == "system":
        return definitions.resource_types()
    return frozenset(definitions.compartment("Patient")) | {"Patient"}


def parse_request(
    parameters: dict[str, Any], level: Level, group_id: str | None, *, lenient: bool, base_url: str
) -> ExportRequest:
    """The checked request (raises ``FhirError`` 400 for anything wrong or unsupported)."""
    values = _values(parameters)
    request = ExportRequest(level=level, group_id=group_id)

    def unsupported(message: str, name: str) -> None:
        if not lenient:
            raise FhirError(
                400,
                f"{message} (send 'Prefer: handling=lenient' to have it left out instead)",
                code="not-supported",
                expression=[name],
            )
        request.notes.append(f"{message}: left out (handling=lenient)")

    for name in values:
        if name not in _KNOWN:
            unsupported(f"Parameter '{name}' is not supported by $export", name)

    formats = _strings(values.get("_outputFormat", []), "_outputFormat")
    for value in formats:
        if value.strip() not in OUTPUT_FORMATS:
            raise FhirError(
                400,
                f"_outputFormat '{value}' is not written by this server: use application/fhir+ndjson",
                code="not-supported",
                expression=["_outputFormat"],
            )

    since = _strings(values.get("_since", []), "_since")
    if len(since) > 1:
        raise _bad("_since may be given once", "_since")
    if since:
        request.since = _since(since[0])

    covered = level_types(level)
    types: list[str] = []
    for value in _strings(values.get("_type", []), "_type"):
        for name in (t.strip() for t in value.split(",")):
            if not name:
                continue
            if not definitions.is_resource_type(name):
                if not lenient:
                    raise _bad(f"_type '{name}' is not a FHIR resource type", "_type")
                request.notes.append(f"_type '{name}' is not a FHIR resource type: left out")
                continue
            if name not in covered:
                if not lenient:
                    raise _bad(
                        f"_type '{name}' is not in the Patient compartment ({level}-level export)", "_type"
                    )
                request.notes.append(f"_type '{name}' is outside the Patient compartment: left out")
                continue
            if name not in types:
                types.append(name)
    if values.get("_type") is not None:
        if not types:
            raise _bad("_type names no resource type this export can write", "_type")
        request.types = types

    for value in _strings(values.get("_typeFilter", []), "_typeFilter"):
        _type_filter(request, value, covered, lenient, base_url)

    elements = []
    for value in _strings(values.get("_elements", []), "_elements"):
        for item in (e.strip() for e in value.split(",")):
            if not item:
                continue
            if not _ELEMENT.match(item) or (
                "." in item and not definitions.is_resource_type(item.split(".")[0])
            ):
                raise _bad(f"_elements item '{item}' is not an element name or Type.element", "_elements")
            elements.append(item)
    request.elements = elements or None

    patients = []
    for value in _strings(values.get("patient", []), "patient"):
        for ref in (r.strip() for r in value.split(",")):
            if not ref:
                continue
            kind, _, id_ = ref.rstrip("/").rpartition("/")
            if not kind.endswith("Patient") or not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", id_):
                raise _bad(f"patient '{ref}' is not a Patient reference (Patient/ID)", "patient")
            patients.append(id_)
    if patients:
        if level == "system":
            raise _bad("patient applies to Patient- and Group-level exports only", "patient")
        request.patients = sorted(set(patients))

    for value in _strings(values.get("includeAssociatedData", []), "includeAssociatedData"):
        for item in (v.strip() for v in value.split(",")):
            if item and item in _ASSOCIATED | {"_none"}:
                if item != "_none":
                    unsupported(f"includeAssociatedData '{item}' is not supported", "includeAssociatedData")
            elif item:
                raise _bad(f"includeAssociatedData '{item}' is not a known value", "includeAssociatedData")

    for value in _strings(values.get("organizeOutputBy", []), "organizeOutputBy"):
        unsupported(
            f"organizeOutputBy '{value}' is not supported (files are organised by type)", "organizeOutputBy"
        )
    for value in _strings(values.get("allowPartialManifests", []), "allowPartialManifests"):
        if value.lower() not in ("true", "false"):
            raise _bad("allowPartialManifests is true or false", "allowPartialManifests")
        # Allowed, never needed: the manifest is only sent once the export is complete.

    flags = _strings(values.get("deidentify", []), "deidentify")
    if flags:
        if len(flags) > 1 or flags[0].lower() not in ("true", "false"):
            raise _bad("deidentify is true or false", "deidentify")
        request.deidentify = flags[0].lower() == "true"
    return request


def _type_filter(
    request: ExportRequest, raw: str, covered: frozenset[str], lenient: bool, base_url: str
) -> None:
    text = raw.strip()
    rtype, sep, query = text.partition("?")
    if not sep or not definitions.is_resource_type(rtype):
        raise _bad(f"_typeFilter '{raw}' is not of the form Type?search-parameters", "_typeFilter")
    if rtype not in covered:
        raise _bad(f"_typeFilter '{raw}': {rtype} is not exported at this level", "_typeFilter")
    if request.types is not None and rtype not in request.types:
        raise _bad(f"_typeFilter '{raw}': {rtype} is not one of the types in _type", "_typeFilter")
    params = parse_qsl(query, keep_blank_values=True)
    if not params:
        raise _bad(f"_typeFilter '{raw}' has no search parameters", "_typeFilter")
    for name, _ in params:
        if name.startswith(("_include", "_revinclude", "_sort", "_count", "_summary", "_elements", "_total")):
            raise _bad(
                f"_typeFilter '{raw}': {name} is not a filter (only search criteria are)", "_typeFilter"
            )
    try:
        parse_search(rtype, params, base_url=base_url, strict=True, default_count=1, max_count=1)
    except FhirError as error:
        if error.code == "not-supported" and lenient:
            request.notes.append(f"_typeFilter '{raw}' left out: {error.diagnostics}")
            return
        raise FhirError(
            400, f"_typeFilter '{raw}': {error.diagnostics}", code=error.code, expression=["_typeFilter"]
        ) from None
    request.type_filters.setdefault(rtype, []).append(query)
