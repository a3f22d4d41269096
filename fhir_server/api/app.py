"""The ASGI application: the FHIR base, error handling and the store's lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from fhir_server import observability
from fhir_server.api import home, routes
from fhir_server.api.responses import error_response
from fhir_server.config import Settings
from fhir_server.interactions.errors import FhirError
from fhir_server.observability import TimedStore
from fhir_server.storage import create_store, open_store
from fhir_server.storage.base import Store

log = logging.getLogger("termtem")


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    """Build the app. With ``store`` given, the caller owns its lifetime (tests, the CLI)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = store is None
        app.state.store = TimedStore(store or create_store(settings), metrics)
        if owned:
            await open_store(app.state.store, settings)
        from fhir_server.interactions.startup import prepare_store, release_store, start_jobs

        # A worker of `termtem serve --workers` finds the shipped resources loaded by its supervisor.
        prepared = getattr(app.state, "store_prepared", False)
        await prepare_store(app.state.store, settings, load_shipped=not prepared)
        app.state.jobs = await start_jobs(app.state.store, settings)
        background = None
        if settings.subscription_delivery:
            from fhir_server.subscriptions.runner import Background

            listening = getattr(app.state, "listening_base", "")
            base = settings.public_base_url or listening or "http://127.0.0.1/fhir"
            background = Background(app.state.store, settings, base)
            background.start()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            if background is not None:
                await background.stop()
            from fhir_server.analytics.service import stop_analytics

            await stop_analytics(app.state)
            await release_store(app.state.store, app.state.jobs)
            if owned:
                await app.state.store.close()

    app = FastAPI(
        title="Termtem FHIR server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.settings = settings
    app.state.ready = False

    if settings.auth:
        from fhir_server.security.http import install

        install(app, settings)  # before the FHIR catch-all, so its routes under the base are reachable
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)  # when the client accepts it
    metrics = observability.install(app, settings)  # after security: it times the audit hook
    if store is not None:
        app.state.store = TimedStore(store, metrics)
    app.add_route("/", home.front_page, methods=["GET", "HEAD"])
    from fhir_server.dashboard.http import install as install_dashboard

    install_dashboard(app, settings)
    base = settings.base_path.rstrip("/")
    from fhir_server.subscriptions import websocket as subscription_websocket

    async def _websocket(connection: WebSocket) -> None:
        from fhir_server.api.urls import base_url

        http_base = base_url(connection, settings)  # type: ignore[arg-type]
        await subscription_websocket.serve(connection, connection.app.state.store, settings, http_base)

    app.router.add_websocket_route(base + subscription_websocket.PATH, _websocket)
    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    app.add_route(base, routes.handle, methods=methods)
    app.add_route(base + "/{path:path}", routes.handle, methods=methods)

    @app.exception_handler(FhirError)
    async def _fhir_error(request: Request, exc: FhirError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Requests no route takes (outside the FHIR base, a path with a newline, a wrong method on
        # /auth/token): the same OperationOutcome as any other error, not the framework's own JSON.
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "invalid")
        text = f"No endpoint at '{request.url.path[:200]}'" if exc.status_code == 404 else str(exc.detail)
        return error_response(FhirError(exc.status_code, text, code=code, headers=dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(FhirError(500, f"Internal error: {type(exc).__name__}", code="exception"))

    return app
