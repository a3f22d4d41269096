"""Running it as a service: access logs with request ids, health and readiness, Prometheus metrics.

``install(app, settings)`` wires everything into an app; ``logs.configure`` sets up log output for a
process; ``redact.redact_url`` is for printing any store or server URL.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from fhir_server.config import Settings
from fhir_server.observability import endpoints
from fhir_server.observability.metrics import Metrics, register_job_source
from fhir_server.observability.middleware import RequestObserver, note_caller
from fhir_server.observability.redact import redact_url
from fhir_server.observability.timed_store import TimedStore, backend_of

__all__ = ["TimedStore", "backend_of", "install", "note_caller", "redact_url", "register_job_source"]


def install(app: FastAPI, settings: Settings) -> Metrics:
    """Add the request observer, the health/ready/metrics routes, and audit timing to ``app``."""
    metrics = Metrics()
    app.state.metrics = metrics
    app.add_middleware(RequestObserver, metrics=metrics, base_path=settings.base_path)
    app.add_route("/health", endpoints.health, methods=["GET", "HEAD"])
    app.add_route("/ready", endpoints.ready, methods=["GET", "HEAD"])
    app.add_route("/metrics", endpoints.metrics_endpoint(metrics, settings.metrics_token), methods=["GET"])
    after: Callable[..., Awaitable[None]] | None = getattr(app.state, "after_interaction", None)
    if after is not None:
        app.state.after_interaction = _audit_timed(after, metrics)
    from fhir_server.jobs import kinds, runner

    for kind in kinds.names():  # every kind of background job (reindex, export, ...)
        register_job_source(kind, functools.partial(runner.local_counts, kind))
    return metrics


def _audit_timed(after: Callable[..., Awaitable[None]], metrics: Metrics) -> Callable[..., Awaitable[None]]:
    """The security layer's after-hook (it stores the request's AuditEvent), counted as audit backlog."""

    async def timed(*args: Any) -> None:
        metrics.audit_backlog.inc()
        start = time.perf_counter()
        try:
            await after(*args)
        finally:
            metrics.audit_backlog.dec()
            metrics.audit_latency.observe(time.perf_counter() - start)

    return timed
