"""The search-parameter registry: every R4 SearchParameter per resource type, plus custom ones.

Core parameters come from the shipped definitions (a parameter with several bases applies to each;
``Resource``/``DomainResource`` ones apply to every type). Custom parameters arrive as SearchParameter
resources; they stay *pending* until a ``$reindex`` job has indexed existing data, and searches that
use a pending parameter are refused so no existing resource silently goes missing.
"""

from __future__ import annotations

import threading
from typing import Any

from fhir_server import definitions
from fhir_server.interactions.errors import FhirError
from fhir_server.search.model import Component, SearchParam

# Types the index and the query compiler handle. ``special`` (near, _text, _content) is left out.
SUPPORTED_TYPES = frozenset(
    {"number", "date", "string", "token", "reference", "composite", "quantity", "uri"}
)

_lock = threading.RLock()
_core: dict[str, dict[str, SearchParam]] | None = None
_by_url: dict[str, dict[str, Any]] = {}
_custom: dict[str, dict[str, SearchParam]] = {}  # type -> code -> param
_custom_urls: dict[str, list[tuple[str, str]]] = {}  # url -> [(type, code)]
_pending: set[str] = set()  # urls of custom params whose reindex has not completed
# Computed parameters: (type, code) -> builder(parser, name, value) returning a condition made of other
# parameters' tests (``Task?overdue=true`` is "open status and due date before now"). Nothing is indexed
# for them; their definitions ship as SearchParameter resources of type ``special``.
_computed: dict[tuple[str, str], tuple[str, Any]] = {}
# Modules that register computed parameters, imported on first use (like the job kinds).
COMPUTED_MODULES = ("fhir_server.workflow.deadlines",)
_computed_loaded = False


def _param(base: str, sp: dict[str, Any], custom: bool = False) -> SearchParam:
    return SearchParam(
        resource_type=base,
        code=sp["code"],
        type=sp["type"],
        expression=sp.get("expression") or "",
        url=sp.get("url", ""),
        targets=tuple(sp.get("target", []) or ()),
        components=tuple(Component(c["definition"], c["expression"]) for c in sp.get("component", []) or []),
        custom=custom,
        description=sp.get("description", "") or "",
    )


def _bases(sp: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for base in sp.get("base", []) or []:
        if base in ("Resource", "DomainResource"):
            out.extend(sorted(definitions.resource_types()))
        else:
            out.append(base)
    return out


def _load_core() -> dict[str, dict[str, SearchParam]]:
    global _core
    with _lock:
        if _core is not None:
            return _core
        table: dict[str, dict[str, SearchParam]] = {t: {} for t in definitions.resource_types()}
        for sp in definitions.search_parameters():
            _by_url[sp["url"]] = sp
            if sp["type"] not in SUPPORTED_TYPES or not sp.get("expression"):
                continue
            for base in _bases(sp):
                table.setdefault(base, {})[sp["code"]] = _param(base, sp)
        _core = table
        return table


def parameters_for(resource_type: str) -> dict[str, SearchParam]:
    """Every usable parameter for a type, custom ones included (pending ones too: check ``is_pending``)."""
    core = _load_core().get(resource_type, {})
    custom = _custom.get(resource_type)
    if not custom:
        return core
    return {**core, **custom}


def get(resource_type: str, code: str) -> SearchParam | None:
    custom = _custom.get(resource_type)
    if custom and code in custom:
        return custom[code]
    return _load_core().get(resource_type, {}).get(code)


def register_computed(resource_type: str, code: str, url: str, builder: Any) -> None:
    """Add a computed parameter: ``builder(parser, name, value)`` returns the condition it stands for."""
    _computed[(resource_type, code)] = (url, builder)


def _load_computed() -> None:
    global _computed_loaded
    if _computed_loaded:
        return
    _computed_loaded = True
    import importlib

    for module in COMPUTED_MODULES:
        importlib.import_module(module)


def computed(resource_type: str, code: str) -> Any | None:
    """The builder of a computed parameter, or None."""
    _load_computed()
    entry = _computed.get((resource_type, code))
    return entry[1] if entry else None


def computed_parameters(resource_type: str) -> list[tuple[str, str]]:
    """(code, definition url) of the computed parameters of a type (for the CapabilityStatement)."""
    _load_computed()
    return sorted((code, url) for (rtype, code), (url, _) in _computed.items() if rtype == resource_type)


def definition(url: str) -> dict[str, Any] | None:
    """The SearchParameter definition (compact core form or a custom resource) for a canonical URL."""
    _load_core()
    return _by_url.get(url.split("|", 1)[0])


def component_param(resource_type: str, component: Component) -> SearchParam | None:
    """The parameter a composite component refers to, as it applies to ``resource_type``."""
    sp = definition(component.definition)
    if sp is None:
        return None
    return _param(resource_type, sp)


def is_pending(param: SearchParam) -> bool:
    return param.custom and param.url in _pending


def check_usable(param: SearchParam, name: str) -> None:
    """Refuse a custom parameter whose reindex has not completed (400 naming the parameter)."""
    if is_pending(param):
        raise FhirError(
            400,
            f"Search parameter '{name}' ({param.url}) is waiting for its $reindex to complete; "
            "it cannot be used until every existing resource has been indexed",
            code="not-supported",
        )


def register_custom(search_parameter_resource: dict[str, Any], *, pending: bool = True) -> list[SearchParam]:
    """Add (or replace) a custom SearchParameter; new ones are pending until reindexed.

    Raises FhirError(422) for a definition the index cannot use.
    """
    sp = search_parameter_resource
    code, url, kind = sp.get("code"), sp.get("url"), sp.get("type")
    if not code or not url or not kind:
        raise FhirError(422, "A SearchParameter needs code, url and type", code="required")
    if kind not in SUPPORTED_TYPES:
        raise FhirError(
            422,
            f"SearchParameter type '{kind}' is not supported",
            code="not-supported",
            expression=["SearchParameter.type"],
        )
    if not sp.get("expression"):
        raise FhirError(
            422,
            "A custom SearchParameter needs a FHIRPath expression",
            code="required",
            expression=["SearchParameter.expression"],
        )
    bases = _bases(sp)
    unknown = [b for b in bases if b not in definitions.resource_types()]
    if not bases or unknown:
        raise FhirError(
            422,
            f"SearchParameter.base names unknown resource types: {unknown}",
            expression=["SearchParameter.base"],
        )
    _check_expression(sp["expression"], bases[0])
    with _lock:
        _unregister(url)
        params = [_param(base, sp, custom=True) for base in bases]
        for p in params:
            _custom.setdefault(p.resource_type, {})[p.code] = p
        _custom_urls[url] = [(p.resource_type, p.code) for p in params]
        _by_url[url] = sp
        if pending:
            _pending.add(url)
        else:
            _pending.discard(url)
    from fhir_server.search import extract

    extract.clear_cache()
    return params


def _check_expression(expression: str, base: str) -> None:
    """Reject an expression the FHIRPath engine cannot parse or run (some errors show only when run)."""
    from fhir_server.fhirpath import check_patterns
    from fhir_server.search.paths import _fhirpath

    try:
        check_patterns(expression)
        _fhirpath(expression)({"resourceType": base, "id": "x"})
    except Exception as exc:  # parse and evaluation errors come as assorted exception types
        raise FhirError(
            422,
            f"Invalid FHIRPath expression {expression!r}: {exc}",
            expression=["SearchParameter.expression"],
        ) from exc


def _unregister(url: str) -> None:
    if _custom_urls.pop(url, None) is None:
        return
    for params in _custom.values():
        for code in [c for c, p in params.items() if p.url == url]:
            params.pop(code)
    _by_url.pop(url, None)
    _pending.discard(url)


def unregister_custom(url: str) -> None:
    with _lock:
        _unregister(url)
    from fhir_server.search import extract

    extract.clear_cache()


def mark_reindexed(url: str) -> None:
    """Called when a reindex job covering ``url`` completed: the parameter becomes searchable."""
    with _lock:
        _pending.discard(url)


def pending_urls() -> set[str]:
    return set(_pending)


def custom_parameters() -> list[SearchParam]:
    return [p for params in _custom.values() for p in params.values()]


def on_search_parameter_written(resource: dict[str, Any]) -> None:
    """Write-path hook for a created/updated SearchParameter: active ones register (pending reindex).

    Core parameters (same URL as a shipped one) are not re-registered. A retired one is removed.
    """
    url = resource.get("url")
    if not url:
        return
    _load_core()
    if url in _by_url and url not in _custom_urls:
        return
    _load_computed()
    if any(entry_url == url for entry_url, _ in _computed.values()):
        _by_url[url] = resource  # built in: computed when searched, nothing to index
        return
    if resource.get("status") == "retired":
        unregister_custom(url)
        return
    register_custom(resource)


def on_search_parameter_deleted(url: str) -> None:
    unregister_custom(url)
