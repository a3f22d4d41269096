"""HTTP face of security: the token endpoint, SMART discovery, the JWKS, and wiring into the app."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api import limits
from fhir_server.api.responses import SECURITY_HEADERS
from fhir_server.config import Settings
from fhir_server.interactions.errors import FhirError
from fhir_server.security import audit, keys
from fhir_server.security.service import Security
from fhir_server.security.tokens import TokenError

KEY_FILE = "signing-key.jwk.json"
MAX_TOKEN_REQUEST = 64 * 1024


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={**SECURITY_HEADERS, "Pragma": "no-cache", **(headers or {})},
    )


def _base_url(request: Request, settings: Settings) -> str:
    from fhir_server.api.urls import base_url

    return base_url(request, settings)


async def _form(request: Request) -> dict[str, str]:
    try:
        data = await limits.read_body(request, request.app.state.settings, MAX_TOKEN_REQUEST)
    except FhirError as exc:  # too large, too slow: said the OAuth way
        raise TokenError(exc.status, "invalid_request", exc.diagnostics) from None
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise TokenError(
            400, "invalid_request", "the token request must be application/x-www-form-urlencoded"
        )
    return dict(parse_qsl(data.decode("utf-8", errors="replace"), keep_blank_values=True))


def _claimed_client(form: dict[str, str]) -> str | None:
    """The client an assertion claims to be (unverified: only for the audit of a refusal)."""
    from fhir_server.security.tokens import _unverified

    try:
        _, payload = _unverified(form.get("client_assertion", ""))
    except TokenError:
        return None
    iss = payload.get("iss")
    return iss[:200] if isinstance(iss, str) else None


def install(app: FastAPI, settings: Settings) -> None:
    """Add the security routes and hooks (call before the FHIR catch-all routes are added)."""
    security = Security(settings, keys.load_or_create(settings.data_dir / KEY_FILE))
    app.state.security = security
    app.state.before_interaction = security.before
    app.state.after_interaction = security.after

    async def token(request: Request) -> Response:
        store = request.app.state.store
        base = _base_url(request, settings)
        record = audit.AuditRecord(
            interaction="login", outcome_status=200, address=request.client.host if request.client else None
        )
        form: dict[str, str] = {}
        try:
            form = await _form(request)
            body, client_id = await security.tokens(store).issue(
                form, token_url=security.urls(base)["token"], fhir_base=base
            )
            record.client_id = client_id
            client = await security.tokens(store).principal({"sub": client_id, "scope": body["scope"]})
            record.client_name, record.organization = client.name, client.organization
            record.description = f"access token issued with scope {body['scope']}"
            response = _json(body)
        except TokenError as exc:
            record.outcome_status = exc.status
            record.client_id = _claimed_client(form)
            record.description = f"token refused: {exc.error}: {exc.description}"
            headers = {"WWW-Authenticate": 'Bearer realm="termtem"'} if exc.status == 401 else None
            response = _json(exc.body(), exc.status, headers)
        await audit.write_audit(store, record)
        return response

    async def smart_configuration(request: Request) -> Response:
        return _json(security.smart_configuration(_base_url(request, settings)))

    async def jwks(request: Request) -> Response:
        return _json(security.key.jwks)

    base = settings.base_path.rstrip("/")
    app.add_route(base + "/.well-known/smart-configuration", smart_configuration, methods=["GET"])
    app.add_route("/auth/token", token, methods=["POST"])
    app.add_route("/auth/jwks", jwks, methods=["GET"])
