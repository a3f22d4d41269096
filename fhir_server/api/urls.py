"""The server's own base URL: the configured public one, else the address it listens on.

Never the request's Host header: a client chooses that, and the base URL is also the audience of access
tokens and client assertions, so a Host naming another server sharing the key would make its tokens
acceptable here.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request

from fhir_server.config import Settings


def _host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def listening_base(scheme: str, host: str, port: int | None, base_path: str) -> str:
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = _host(host) if port in (None, default) else f"{_host(host)}:{port}"
    return f"{scheme}://{netloc}{base_path}".rstrip("/")


def base_url(request: Request, settings: Settings) -> str:
    """The FHIR base URL for links and token audiences (without a trailing slash)."""
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    server = request.scope.get("server")
    scheme = {"ws": "http", "wss": "https"}.get(request.url.scheme, request.url.scheme)
    if server and server[0]:
        host, port = server[0], server[1] if len(server) > 1 else None
        return listening_base(scheme, str(host), port, settings.base_path)
    return listening_base(scheme, "localhost", None, settings.base_path)
