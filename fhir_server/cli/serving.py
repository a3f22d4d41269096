"""What ``serve`` and ``demo`` share: checks before starting (each failing with one clear line and an
exit status) and running uvicorn with our logging and HTTP protocol."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import typer

from fhir_server.config import Settings

EXIT_USAGE = 2  # a bad option or URL
EXIT_UNAVAILABLE = 3  # the store or the port cannot be used right now


def fail(message: str, status: int) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(status)


def check_port(host: str, port: int) -> None:
    """Refuse early (before any work) when ``host:port`` is taken or cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise fail(
                    f"port {port} on {host} is already in use (another server?); choose another with --port",
                    EXIT_UNAVAILABLE,
                ) from None
            raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_UNAVAILABLE) from None


def check_store(settings: Settings) -> None:
    """Open the store, check its schema version and close it again, or exit with one line."""
    from fhir_server.storage import BadStoreUrl, StoreError, create_store, open_store
    from fhir_server.storage.schema_version import check_schema

    try:
        store = create_store(settings)
    except BadStoreUrl as exc:
        raise fail(str(exc), EXIT_USAGE) from None

    async def probe() -> None:
        await open_store(store, settings)
        try:
            await check_schema(store)
        finally:
            await store.close()

    try:
        asyncio.run(probe())
    except StoreError as exc:
        raise fail(str(exc), EXIT_UNAVAILABLE) from None


def run(
    app: Any, host: str, port: int, log_config: dict[str, Any], log_level: str, max_header_bytes: int
) -> None:
    """Serve ``app`` until interrupted (uvicorn's own access log off: ours logs one line a request)."""
    import uvicorn

    from fhir_server.api.protocol import uvicorn_options

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=log_config,
        log_level=log_level,
        access_log=False,
        **uvicorn_options(max_header_bytes),
    )
