"""``GET /metadata?mode=terminology``: the TerminologyCapabilities of this server's terminology service.

It lists every code system the service can look codes up in (ours, the DOPA administrative areas and
FHIR R4 core ones whose content is complete or a fragment), and what ``$expand``, ``$validate-code``
and ``$translate`` take, derived from the same registry the operations use.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from fhir_server import __version__, definitions
from fhir_server.terminology._registry import registry

_USABLE_CONTENT = ("complete", "fragment")
_EXPAND_PARAMETERS = (
    "url",
    "valueSet",
    "filter",
    "count",
    "offset",
    "includeDesignations",
    "displayLanguage",
)


@cache
def _code_systems() -> tuple[dict[str, Any], ...]:
    ours = [r for r in registry().shipped if r.get("resourceType") == "CodeSystem"]
    seen: dict[str, dict[str, Any]] = {}
    for cs in [*ours, *definitions.code_systems()]:
        url = cs.get("url")
        if not url or url in seen or cs.get("content", "complete") not in _USABLE_CONTENT:
            continue
        entry: dict[str, Any] = {"uri": url}
        if cs.get("version"):
            entry["version"] = [{"code": cs["version"], "isDefault": True}]
        seen[url] = entry
    return tuple(seen[url] for url in sorted(seen))


def terminology_capabilities(base_url: str) -> dict[str, Any]:
    return {
        "resourceType": "TerminologyCapabilities",
        "name": "TermtemTerminologyService",
        "title": "Termtem terminology service",
        "status": "active",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "publisher": "Termtem",
        "kind": "instance",
        "software": {"name": "Termtem", "version": __version__},
        "implementation": {"description": "Termtem FHIR server", "url": base_url},
        "lockedDate": False,
        "codeSystem": list(_code_systems()),
        "expansion": {
            "hierarchical": False,
            "paging": True,
            "incomplete": False,
            "parameter": [{"name": name} for name in _EXPAND_PARAMETERS],
            "textFilter": "Every word of the filter must occur in the display or a designation (Thai or"
            " English, normalised), in any order.",
        },
        "codeSearch": "explicit",
        "validateCode": {"translations": False},
        "translation": {"needsMap": True},
        "closure": {"translation": False},
    }
