"""Content negotiation: what bodies we accept and what we answer (FHIR JSON only).

Real clients send ``application/fhir+json`` and plain ``application/json`` bodies, and Accept headers
of fhir+json, json, ``*/*`` or nothing at all; all get FHIR JSON. XML is not offered: asking only for
it is 406, sending it is 415.
"""

from __future__ import annotations

from fhir_server.interactions.errors import FhirError

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
FORM = "application/x-www-form-urlencoded"
_JSON_TYPES = {FHIR_JSON, "application/json", "text/json", "json", "application/json+fhir"}
_FORMAT_ALIASES = {
    "json",
    "application/json",
    "application/fhir+json",
    "fhir+json",
    "application/json+fhir",
    "text/json",
}
_XML_TYPES = {
    "xml",
    "application/xml",
    "application/fhir+xml",
    "text/xml",
    "application/xml+fhir",
    "fhir+xml",
}


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """A body we read as JSON (FHIR JSON, plain JSON, JSON Patch, or no type given)."""
    kind = media_type(content_type)
    return kind in _JSON_TYPES or kind in ("", JSON_PATCH)


def check_body_type(content_type: str | None, *, allow_patch: bool = False, allow_form: bool = False) -> str:
    """The body's media type, if we can read it; else 415."""
    kind = media_type(content_type)
    if kind in _JSON_TYPES or kind == "":
        return FHIR_JSON
    if allow_patch and kind == JSON_PATCH:
        return JSON_PATCH
    if allow_form and kind == FORM:
        return FORM
    raise FhirError(
        415,
        f"Unsupported media type '{kind}': send application/fhir+json or application/json"
        + (" (or application/json-patch+json)" if allow_patch else ""),
        code="not-supported",
    )


def check_format(format_param: str | None, accept: str | None) -> None:
    """Refuse (406) a request that can only take a format we do not produce."""
    if format_param is not None:
        value = format_param.strip().lower().replace(" ", "+")  # an unescaped "+" arrives as a space
        if value in _FORMAT_ALIASES:
            return
        raise FhirError(
            406,
            f"_format '{format_param}' is not supported: this server speaks FHIR JSON",
            code="not-supported",
            expression=["_format"],
        )
    if not accept:
        return
    wanted = [media_type(part) for part in accept.split(",")]
    if any(
        w in _JSON_TYPES
        or w in ("*/*", "application/*", "")
        or w.startswith("application/ndjson")
        or w == "application/fhir+ndjson"
        for w in wanted
    ):
        return
    if all(w in _XML_TYPES for w in wanted):
        raise FhirError(
            406, "This server answers in FHIR JSON only (application/fhir+json)", code="not-supported"
        )
