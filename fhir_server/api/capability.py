"""The CapabilityStatement, generated from what is really routed and registered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir_server import FHIR_VERSION, __version__, definitions
from fhir_server.interactions.context import RequestContext
from fhir_server.operations.table import OPERATIONS

# Every resource type gets the full REST interaction set the router implements.
_TYPE_INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]


def _search_support(resource_type: str) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    from fhir_server.search import capability

    params = capability.capability_search_params(resource_type)
    includes, revincludes = capability.capability_includes(resource_type)
    return params, includes, revincludes


def _operations(resource_type: str | None) -> list[dict[str, Any]]:
    out = []
    for op in OPERATIONS:
        if (resource_type is None and op.system) or (resource_type in op.resource_types):
            entry = {
                "name": op.name,
                "definition": op.definition
                or f"http://hl7.org/fhir/OperationDefinition/{(resource_type or 'Resource')}-{op.name}",
            }
            out.append(entry)
    return out


def _hosted_resources() -> list[dict[str, Any]]:
    """Types hosted beside R4's (SQL on FHIR's ViewDefinition), with what their router offers."""
    from fhir_server.analytics.views import library

    return [
        {
            "type": library.RESOURCE_TYPE,
            "profile": "https://sql-on-fhir.org/ig/StructureDefinition/ViewDefinition",
            "interaction": [{"code": c} for c in ("read", "update", "delete", "create", "search-type")],
            "versioning": "versioned",
            "updateCreate": True,
            "searchParam": [
                {"name": name, "type": "token" if name in ("_id", "resource", "status") else "string"}
                for name in library.SEARCH_PARAMETERS
            ],
            "operation": _operations(library.RESOURCE_TYPE),
        }
    ]


def _supported_profiles(resource_type: str) -> list[str]:
    try:
        from fhir_server.validation.profiles import shipped_profiles
    except ImportError:
        return []
    return sorted(
        p["url"]
        for p in shipped_profiles()
        if p.get("resourceType") == "StructureDefinition"
        and p.get("type") == resource_type
        and p.get("kind") == "resource"
        and p.get("derivation") == "constraint"
    )


def _registry_state() -> tuple[Any, ...]:
    """What the per-type part depends on besides the release: custom parameters and their reindex."""
    from fhir_server.search import registry

    custom = sorted((p.resource_type, p.code, p.url) for p in registry.custom_parameters())
    return tuple(custom), tuple(sorted(registry.pending_urls()))


_resources_cache: tuple[tuple[Any, ...], list[dict[str, Any]]] | None = None


def _resources() -> list[dict[str, Any]]:
    """``rest.resource`` (1 MB, 145 types), rebuilt only when a custom SearchParameter changes."""
    global _resources_cache
    state = _registry_state()
    if _resources_cache is None or _resources_cache[0] != state:
        _resources_cache = (state, _build_resources())
    return _resources_cache[1]


def _build_resources() -> list[dict[str, Any]]:
    resources = []
    for resource_type in sorted(definitions.resource_types()):
        params, includes, revincludes = _search_support(resource_type)
        entry: dict[str, Any] = {
            "type": resource_type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        }
        profiles = _supported_profiles(resource_type)
        if profiles:
            entry["supportedProfile"] = profiles
        entry.update(
            {
                "interaction": [
                    {"code": code}
                    for code in _TYPE_INTERACTIONS
                    if not (resource_type == "AuditEvent" and code in ("update", "patch", "delete"))
                ],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalRead": "not-supported",
                "conditionalUpdate": True,
                "conditionalDelete": "multiple",
                "searchInclude": includes,
                "searchRevInclude": revincludes,
                "searchParam": params,
            }
        )
        ops = _operations(resource_type)
        if ops:
            entry["operation"] = ops
        resources.append(entry)
    resources.extend(_hosted_resources())
    return resources


def capability_statement(ctx: RequestContext) -> dict[str, Any]:
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": _resources(),
        "interaction": [{"code": c} for c in ("transaction", "batch", "search-system", "history-system")],
        "operation": _operations(None),
    }
    security = ctx.extras.get("capability_security")
    if security:
        rest["security"] = security
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "publisher": "Termtem",
        "kind": "instance",
        # FHIR Bulk Data Access: $export at system, Patient and Group level (fhir_server.export)
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "software": {"name": "Termtem", "version": __version__},
        "implementation": {"description": "Termtem FHIR server", "url": ctx.base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [rest],
    }
