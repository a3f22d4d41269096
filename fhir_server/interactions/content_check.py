"""Which validation a write goes through: structure always; profiles named or required.

The StructureDefinition-driven validator (``fhir_server.validation.validator``) checks the base R4
definition and every profile; until it is present the R4B models check the structure.
"""

from __future__ import annotations

from typing import Any

from fhir_server.config import Settings


def profiles_to_check(resource: dict[str, Any], settings: Settings) -> list[str]:
    meta = resource.get("meta")
    named = meta.get("profile", []) if isinstance(meta, dict) else []
    required = settings.required_profiles.get(resource.get("resourceType", ""), [])
    return [p for p in [*required, *named] if isinstance(p, str)]


def check_for_write(resource: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """Issues found in ``resource`` (errors reject the write)."""
    try:
        from fhir_server.validation.validator import validate
    except ImportError:
        from fhir_server.validation.structural import validate_structure

        return validate_structure(resource)
    return validate(resource, profiles_to_check(resource, settings))
