"""Turning interaction outcomes and errors into HTTP responses."""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import orjson
from starlette.responses import Response

from fhir_server import fhirjson
from fhir_server.interactions.errors import FhirError
from fhir_server.interactions.results import Outcome

CONTENT_TYPE = "application/fhir+json; charset=utf-8"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def http_date(instant: str) -> str:
    return format_datetime(datetime.fromisoformat(instant.replace("Z", "+00:00")), usegmt=True)


def not_modified(
    if_none_match: str | None, if_modified_since: str | None, version: int, instant: str
) -> bool:
    """Whether a conditional read can be answered 304 (RFC 9110 13.1: If-None-Match wins when present).

    ETags are compared weakly (``W/"3"`` matches ``"3"``); dates to the second, as HTTP dates carry.
    """
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or f'"{version}"' in tags
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False  # an unreadable date is ignored, as HTTP says
        if since.tzinfo is None:
            return False
        changed = datetime.fromisoformat(instant.replace("Z", "+00:00")).replace(microsecond=0)
        return changed <= since
    return False


def _body(content: bytes | None, pretty: bool) -> bytes:
    if content is None:
        return b""
    return fhirjson.pretty(content) if pretty else content


def fhir_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None, *, pretty: bool = False
) -> Response:
    content = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    all_headers = {**SECURITY_HEADERS, **(headers or {})}
    if content is None or status == 204:
        return Response(status_code=status, headers=all_headers)
    return Response(_body(content, pretty), status_code=status, headers=all_headers, media_type=CONTENT_TYPE)


def error_response(error: FhirError, *, pretty: bool = False) -> Response:
    return fhir_response(error.outcome(), error.status, error.headers, pretty=pretty)


def outcome_response(
    outcome: Outcome,
    *,
    prefer_return: str | None,
    pretty: bool = False,
    shaped_body: bytes | None = None,
    default_text: str = "The request succeeded",
) -> Response:
    """A response for one interaction, honouring ``Prefer: return=``."""
    headers: dict[str, str] = {}
    if outcome.stored is not None:
        headers["ETag"] = f'W/"{outcome.stored.version}"'
        headers["Last-Modified"] = http_date(outcome.stored.last_updated)
    if outcome.location:
        headers["Location"] = outcome.location
        headers["Content-Location"] = outcome.location
    if prefer_return == "OperationOutcome":
        status = 200 if outcome.status == 204 else outcome.status
        return fhir_response(outcome.outcome_resource(default_text), status, headers, pretty=pretty)
    if prefer_return == "minimal" or outcome.status == 204:
        return fhir_response(None, outcome.status, headers)
    if outcome.body is not None:
        return fhir_response(outcome.body, outcome.status, headers, pretty=pretty)
    if outcome.stored is not None and not outcome.stored.deleted:
        content = shaped_body if shaped_body is not None else outcome.stored.body
        return fhir_response(content, outcome.status, headers, pretty=pretty)
    return fhir_response(None, 204 if outcome.status in (200, 204) else outcome.status, headers)
