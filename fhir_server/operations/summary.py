"""``Patient/[id]/$summary``: the child summary as a FHIR document Bundle, or a printable Thai page.

JSON (``application/fhir+json``) by default; ``_format=html`` or an Accept header preferring
``text/html`` gives the page. The rules live in ``fhir_server.summary``.
"""

from __future__ import annotations

from fhir_server.api import negotiation
from fhir_server.interactions.errors import bad_request
from fhir_server.operations.registry import OperationRequest, OperationResult, parameter_value
from fhir_server.summary import document, page

_HTML_FORMATS = {"html", "text/html"}
_JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "text/json"}


def wants_html(format_param: str | None, accept: str | None) -> bool:
    """``_format`` decides; else the Accept header's most preferred of HTML and JSON (JSON on a tie)."""
    if format_param is not None:
        return format_param.strip().lower() in _HTML_FORMATS
    best_html, best_json = -1.0, 0.0
    for position, part in enumerate((accept or "").split(",")):
        kind, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        q -= position * 1e-6  # earlier wins a tie, as browsers list what they prefer first
        kind = kind.strip().lower()
        if kind == "text/html":
            best_html = max(best_html, q)
        elif kind in _JSON_TYPES:
            best_json = max(best_json, q)
    return best_html > best_json


def _format(request: OperationRequest) -> str | None:
    """The ``_format`` asked for (the operation takes it as a parameter); 400 for any other parameter,
    406 for a format this operation does not produce."""
    chosen = None
    for p in request.parameters.get("parameter", []) or []:
        name = p.get("name") if isinstance(p, dict) else None
        if name != "_format":
            raise bad_request(
                f"$summary takes no parameter {name!r} (ask for the page with _format=html)",
                [str(name) if isinstance(name, str) else "Parameters.parameter"],
            )
        chosen = str(parameter_value(request.parameters, "_format"))
    if chosen is not None and chosen.strip().lower() not in _HTML_FORMATS:
        negotiation.check_format(chosen, None)  # FHIR JSON aliases pass, anything else is 406
    if chosen is None and not wants_html(None, request.headers.get("accept")):
        negotiation.check_format(None, request.headers.get("accept"))
    return chosen


async def summary(request: OperationRequest) -> OperationResult:
    chosen = _format(request)
    assert request.id is not None  # instance level only
    built = await document.build_summary(request.context, request.id)
    if wants_html(chosen, request.headers.get("accept")):
        html, policy = page.render(built)
        return OperationResult(
            raw=html.encode("utf-8"),
            headers={"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": policy},
        )
    return OperationResult(document.to_bundle(built))
