"""``/health``, ``/ready`` and ``/metrics``: for load balancers, orchestrators and Prometheus.

``/health`` says the process answers; ``/ready`` that start-up finished (shipped resources loaded,
schema checked) and the store answers within a second; both are public and carry no data. ``/metrics``
is for the operator: it answers a client connected over loopback that did not come through a proxy
(no ``Forwarded``/``X-Forwarded-For``/``X-Real-IP`` header), or anyone presenting
``Authorization: Bearer $TERMTEM_METRICS_TOKEN`` when that is set; anyone else gets 403.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server import __version__
from fhir_server.observability.metrics import Metrics

_READY_TIMEOUT = 1.0
_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _json(body: dict[str, object], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=_HEADERS)


async def health(request: Request) -> Response:
    return _json({"status": "pass", "version": __version__})


async def ready(request: Request) -> Response:
    state = request.app.state
    if not getattr(state, "ready", False):
        return _json({"status": "starting", "store": "unknown"}, 503)
    try:
        await asyncio.wait_for(state.store.kv_get("termtem", "schema"), _READY_TIMEOUT)
    except Exception:
        return _json({"status": "unavailable", "store": "not answering"}, 503)
    return _json({"status": "ready", "store": "ok"})


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def metrics_allowed(request: Request, token: str) -> bool:
    if token:
        offered = request.headers.get("authorization", "")
        if offered.startswith("Bearer ") and hmac.compare_digest(offered[7:].encode(), token.encode()):
            return True
    proxied = any(request.headers.get(h) for h in _PROXY_HEADERS)
    return not proxied and _loopback(request.client.host if request.client else None)


def metrics_endpoint(metrics: Metrics, token: str):  # type: ignore[no-untyped-def]
    async def serve_metrics(request: Request) -> Response:
        if not metrics_allowed(request, token):
            return Response(
                "Metrics are served to loopback clients (not through a proxy) or with the metrics token"
                " (TERMTEM_METRICS_TOKEN).\n",
                status_code=403,
                media_type="text/plain",
                headers=_HEADERS,
            )
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, headers={**_HEADERS, "Content-Type": content_type})

    return serve_metrics
