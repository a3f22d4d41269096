"""The request boundary: request id, one access-log line, metrics, and the last word on crashes.

Pure ASGI (no body buffering, so streamed answers stay streamed). A client's ``X-Request-ID`` is kept
when it is a sane token (letters, digits, ``._:-``, at most 128), else one is generated; either way it is
returned in the response and stamped on every log line written while the request is served. An
exception that escapes the app becomes a 500 OperationOutcome here, logged once with its request id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from fhir_server.observability.logs import REQUEST_ID
from fhir_server.observability.metrics import Metrics
from fhir_server.observability.redact import loggable_target

ACCESS_KEY = "termtem.access"  # the ASGI scope key of the request's ``AccessNote``
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_access_log = logging.getLogger("termtem.access")
_log = logging.getLogger("termtem")


@dataclass
class AccessNote:
    """What the FHIR layer learnt about the caller, for the access line (filled in by the router)."""

    client_id: str | None = None
    agency: str | None = None
    interaction: str | None = None


def note_caller(scope: MutableMapping[str, Any], principal: Any, interaction: str | None = None) -> None:
    """Record the authenticated caller (a ``Principal`` or None) and interaction of this request."""
    note = scope.get(ACCESS_KEY)
    if note is None:
        return
    if principal is not None:
        note.client_id = getattr(principal, "client_id", None)
        note.agency = getattr(principal, "organization", None)
    if interaction:
        note.interaction = interaction


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


@cache
def _describe() -> Any:
    from fhir_server.security.service import describe

    return describe


@cache
def _operation_names() -> frozenset[str]:
    from fhir_server.operations.table import OPERATIONS

    return frozenset(o.name for o in OPERATIONS)


def _interaction(method: str, path: str, base_path: str) -> str:
    """A bounded label for the metrics, from the URL shape."""
    if path == base_path or path.startswith(base_path + "/"):
        segments = [s for s in path[len(base_path) :].split("/") if s]
        if segments and segments[0] == ".well-known":
            return "smart-configuration"
        interaction, _, _ = _describe()(method, segments)
        if interaction == "operation":
            op = next((s for s in segments if s.startswith("$")), "$")
            return f"operation:{op}" if op[1:] in _operation_names() else "operation:unknown"
        return interaction
    return {
        "/": "home",
        "/health": "health",
        "/ready": "ready",
        "/metrics": "metrics",
        "/auth/token": "token",
        "/auth/jwks": "jwks",
    }.get(path, "other")


_CRASH = orjson.dumps(
    {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "fatal", "code": "exception", "diagnostics": "Internal error"}],
    }
)


def _log_access(
    scope: dict[str, Any], method: str, status: int, seconds: float, note: AccessNote, interaction: str
) -> None:
    target = loggable_target(scope["path"], scope.get("query_string", b"").decode("utf-8", "replace"))
    _access_log.info(
        "%s %s %s",
        method,
        target,
        status,
        extra={
            "method": method,
            "path": target,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "client_id": note.client_id,
            "agency": note.agency,
            "interaction": interaction,
        },
    )


class RequestObserver:
    def __init__(self, app: Any, metrics: Metrics, base_path: str) -> None:
        self.app = app
        self.metrics = metrics
        self.base_path = base_path.rstrip("/")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = _header(scope, b"x-request-id")
        request_id = offered if offered and _VALID_ID.match(offered) else uuid.uuid4().hex
        REQUEST_ID.set(request_id)  # each request runs in its own context: no reset needed
        note = AccessNote()
        scope[ACCESS_KEY] = note
        status = 500
        started = False
        begin = time.perf_counter()
        self.metrics.in_flight.inc()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            status = 500
            where = loggable_target(scope["path"], "")
            _log.exception("unexpected error on %s %s", scope.get("method"), where)
            if started:
                raise
            await self._crash(send_with_id, request_id)
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - begin
            method = scope.get("method", "")
            interaction = note.interaction or _interaction(method, scope["path"], self.base_path)
            self.metrics.observe_request(interaction, status, seconds)
            if _access_log.isEnabledFor(logging.INFO):
                _log_access(scope, method, status, seconds, note, interaction)

    async def _crash(self, send: Any, request_id: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"application/fhir+json; charset=utf-8"),
                    (b"content-length", str(len(_CRASH)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _CRASH})
