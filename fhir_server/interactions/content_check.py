"""Which validation a write goes through: structure always; profiles named or required.

The StructureDefinition-driven validator (``fhir_server.validation.validator``) checks the base R4
definition and every profile the resource names or the configuration requires.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.config import Settings
from fhir_server.interactions import offload
from fhir_server.interactions.errors import FhirError


def profiles_to_check(resource: dict[str, Any], settings: Settings) -> list[str]:
    meta = resource.get("meta")
    named = meta.get("profile") if isinstance(meta, dict) else None
    named = named if isinstance(named, list) else []
    required = settings.required_profiles.get(resource.get("resourceType", ""), [])
    return [p for p in [*required, *named] if isinstance(p, str)]


_MAX_RESOLVED = 20


async def _referenced(resource: dict[str, Any], reader: Any) -> dict[str, dict[str, Any]]:
    """The resources that the top-level references of ``resource`` name, for rules that ``resolve()``
    them (a Consent's rule on the child's age reads the stored Patient's birth date)."""
    found: dict[str, dict[str, Any]] = {}
    for value in resource.values():
        for item in value if isinstance(value, list) else [value]:
            reference = item.get("reference") if isinstance(item, dict) else None
            if not isinstance(reference, str) or reference.count("/") != 1 or reference in found:
                continue
            if len(found) >= _MAX_RESOLVED:
                return found
            resource_type, id_ = reference.split("/")
            # A guarding reader resolves without recording a refusal: looking a reference up for a
            # rule is not an attempt to read it.
            read = getattr(reader, "resolve_reference", None) or reader.read
            try:
                stored = await read(resource_type, id_)
            except FhirError:  # not visible to this caller: its rules cannot use it (nothing may leak)
                continue
            if stored is not None and not stored.deleted:
                found[reference] = orjson.loads(stored.body)
    return found


async def check_for_write(
    resource: dict[str, Any], settings: Settings, reader: Any, *, size: int = 0
) -> list[dict[str, Any]]:
    """Issues found in ``resource`` (errors reject the write).

    ``reader`` (the write transaction) supplies referenced resources to profile rules that need them;
    ``size`` (bytes of JSON) sends a large resource's validation to a worker thread.
    """
    from fhir_server.validation import canonicals
    from fhir_server.validation.validator import validate

    profiles = profiles_to_check(resource, settings)
    declared = (resource.get("meta") or {}).get("profile") if isinstance(resource.get("meta"), dict) else None
    referenced = await _referenced(resource, reader) if (profiles or declared) else {}
    found = await canonicals.prefetch(resource, reader)
    return await offload.run(
        size,
        validate,
        resource,
        profiles,
        resolver=referenced.get if referenced else None,
        canonicals=found,
    )
