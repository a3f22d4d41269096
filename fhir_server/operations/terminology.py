"""Handlers for the terminology operations: $lookup, $validate-code, $expand, $translate, $subsumes.

They only read parameters (GET query values arrive as ``valueString``; POST bodies carry typed values)
and, at instance level, the target resource; the work is done by ``fhir_server.terminology``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from fhir_server import catalog, terminology
from fhir_server.interactions.errors import FhirError
from fhir_server.operations.registry import (
    OperationRequest,
    OperationResult,
    check_complex,
    parameter_value,
    parameter_values,
)

_INTEGER = re.compile(r"-?[0-9]{1,9}")
_TRUE = ("true", True)
_FALSE = ("false", False)


def _expr(name: str) -> list[str]:
    return [f"Parameters.parameter.where(name = '{name}')"]


def _text(request: OperationRequest, name: str) -> str | None:
    value = parameter_value(request.parameters, name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise FhirError(400, f"Parameter '{name}' must be a primitive value", expression=_expr(name))
    return value


def _int(request: OperationRequest, name: str) -> int | None:
    value = parameter_value(request.parameters, name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    raise FhirError(400, f"Parameter '{name}' must be an integer, got '{value}'", expression=_expr(name))


def _bool(request: OperationRequest, name: str) -> bool:
    value = parameter_value(request.parameters, name)
    if value is None or value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise FhirError(400, f"Parameter '{name}' must be true or false, got '{value}'", expression=_expr(name))


_COMPLEX_TYPES = {
    "coding": "Coding",
    "codingA": "Coding",
    "codingB": "Coding",
    "codeableConcept": "CodeableConcept",
    "valueSet": "ValueSet",
    "codeSystem": "CodeSystem",
    "conceptMap": "ConceptMap",
}


def _complex(request: OperationRequest, name: str) -> dict[str, Any] | None:
    """A Coding/CodeableConcept/resource parameter (JSON, or system|code in a query string), checked
    to be well-formed for its type (400 otherwise)."""
    value = _complex_value(request, name)
    if value is not None:
        check_complex(name, value, _COMPLEX_TYPES[name])
    return value


def _complex_value(request: OperationRequest, name: str) -> dict[str, Any] | None:
    value = parameter_value(request.parameters, name)
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise FhirError(400, f"Parameter '{name}' is not valid JSON", expression=_expr(name)) from exc
        if isinstance(parsed, dict):
            return parsed
    if isinstance(value, str) and name.startswith("coding"):
        system, _, code = value.rpartition("|")
        return {"system": system or None, "code": code}
    raise FhirError(400, f"Parameter '{name}' has an unusable value", expression=_expr(name))


async def _target(request: OperationRequest) -> dict[str, Any] | None:
    """The resource an instance-level call is about: from the store, else one we ship, else 404."""
    if request.level != "instance" or not request.resource_type or not request.id:
        return None
    store = request.context.store if request.context is not None else None
    if store is not None:
        stored = await store.read(request.resource_type, request.id)
        if stored is not None:
            if stored.deleted:
                raise FhirError(410, f"{request.resource_type}/{request.id} has been deleted", code="deleted")
            return orjson.loads(stored.body)
    shipped = terminology.shipped_resource(request.resource_type, request.id)
    if shipped is None and (definition := catalog.by_id(request.resource_type, request.id)) is not None:
        shipped = orjson.loads(definition.body)  # one of HL7's R4 definitions (fhir_server.catalog)
    if shipped is None:
        raise FhirError(404, f"{request.resource_type}/{request.id} is not known", code="not-found")
    return shipped


def _ok(body: dict[str, Any]) -> OperationResult:
    return OperationResult(body=body)


async def lookup(request: OperationRequest) -> OperationResult:
    """CodeSystem/$lookup (type and instance level)."""
    code_system = await _target(request)
    coding = _complex(request, "coding")
    system = _text(request, "system")
    code = _text(request, "code")
    if coding is not None:
        system, code = coding.get("system"), coding.get("code")
    properties = [p for p in parameter_values(request.parameters, "property") if isinstance(p, str)]
    return _ok(
        terminology.lookup(
            system,
            code,
            _text(request, "version"),
            properties or None,
            _text(request, "displayLanguage"),
            code_system=code_system,
        )
    )


async def validate_code(request: OperationRequest) -> OperationResult:
    """ValueSet/$validate-code and CodeSystem/$validate-code (type and instance level)."""
    target = await _target(request)
    is_code_system = request.resource_type == "CodeSystem"
    given = _complex(request, "valueSet") if not is_code_system else _complex(request, "codeSystem")
    resource = target or given
    return _ok(
        terminology.validate_code(
            url=_text(request, "url"),
            code=_text(request, "code"),
            system=_text(request, "system"),
            display=_text(request, "display"),
            coding=_complex(request, "coding"),
            codeable_concept=_complex(request, "codeableConcept"),
            kind="CodeSystem" if is_code_system else "ValueSet",
            value_set=None if is_code_system else resource,
            code_system=resource if is_code_system else None,
            version=_text(request, "version") or _text(request, "systemVersion"),
            display_language=_text(request, "displayLanguage"),
        )
    )


async def expand(request: OperationRequest) -> OperationResult:
    """ValueSet/$expand (type and instance level)."""
    target = await _target(request) or _complex(request, "valueSet")
    return _ok(
        terminology.expand(
            url=None if target is not None else _text(request, "url"),
            value_set=target,
            filter=_text(request, "filter"),
            count=_int(request, "count"),
            offset=_int(request, "offset"),
            include_designations=_bool(request, "includeDesignations"),
            display_language=_text(request, "displayLanguage"),
        )
    )


async def translate(request: OperationRequest) -> OperationResult:
    """ConceptMap/$translate (type and instance level)."""
    target = await _target(request) or _complex(request, "conceptMap")
    return _ok(
        terminology.translate(
            url=None if target is not None else _text(request, "url"),
            concept_map=target,
            system=_text(request, "system"),
            code=_text(request, "code"),
            target_system=_text(request, "targetsystem"),
            reverse=_bool(request, "reverse"),
            coding=_complex(request, "coding"),
            source=_text(request, "source"),
            target=_text(request, "target"),
        )
    )


async def subsumes(request: OperationRequest) -> OperationResult:
    """CodeSystem/$subsumes (type and instance level)."""
    code_system = await _target(request)
    system, code_a, code_b = _text(request, "system"), _text(request, "codeA"), _text(request, "codeB")
    coding_a, coding_b = _complex(request, "codingA"), _complex(request, "codingB")
    systems = {c.get("system") for c in (coding_a, coding_b) if c and c.get("system")}
    if len(systems) > 1 or (system and systems and systems != {system}):
        raise FhirError(
            400, "codingA and codingB must be from the same code system", expression=_expr("codingB")
        )
    system = system or next(iter(systems), None)
    code_a = coding_a.get("code") if coding_a else code_a
    code_b = coding_b.get("code") if coding_b else code_b
    return _ok(
        terminology.subsumes(system, code_a, code_b, _text(request, "version"), code_system=code_system)
    )
