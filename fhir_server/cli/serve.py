"""``termtem serve``: run the FHIR server."""

from __future__ import annotations

import ipaddress

import typer

from fhir_server.config import Settings, default_store_url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
        port: int = typer.Option(8080, help="TCP port."),
        store: str = typer.Option(
            None, help="Store URL: sqlite:///PATH (default ./termtem-data/termtem.sqlite, or $TERMTEM_STORE)."
        ),
        public_url: str = typer.Option(
            "",
            "--public-url",
            envvar="TERMTEM_PUBLIC_BASE_URL",
            help="The FHIR base URL clients use (https://host/fhir); tokens are issued for it. Required"
            " with auth on a non-loopback address.",
        ),
        log_level: str = typer.Option(
            "info", envvar="TERMTEM_LOG_LEVEL", help="Log level: debug, info, warning, error."
        ),
        log_format: str = typer.Option(
            "plain", envvar="TERMTEM_LOG_FORMAT", help="Log lines: plain (for people) or json (collectors)."
        ),
        auth: str = typer.Option(
            "on", help="on (default): SMART tokens, consent and audit. off: local trials on loopback only."
        ),
        workers: int = typer.Option(
            None,
            "--workers",
            min=1,
            envvar="TERMTEM_WORKERS",
            help="Server processes sharing the port and the store (default: one per core).",
        ),
    ) -> None:
        """Serve the FHIR R4 API at http://HOST:PORT/fhir."""
        from urllib.parse import urlsplit

        from fhir_server.api.app import create_app
        from fhir_server.api.urls import listening_base
        from fhir_server.cli import serving
        from fhir_server.observability import logs
        from fhir_server.observability.redact import redact_url

        if auth not in ("on", "off"):
            raise typer.BadParameter("--auth takes on or off")
        if auth == "off" and not _loopback(host):
            typer.echo(
                f"error: --auth off refuses to listen on {host}; it is for loopback (127.0.0.1) only",
                err=True,
            )
            raise typer.Exit(2)
        public = public_url.strip().rstrip("/")
        if public:
            parts = urlsplit(public)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise typer.BadParameter(f"--public-url must be an http(s) URL, not '{public_url}'")
        elif auth == "on":
            if not _loopback(host):
                typer.echo(
                    f"error: with auth on, listening on {host} needs the public FHIR base URL clients use"
                    " (--public-url https://HOST/fhir or TERMTEM_PUBLIC_BASE_URL): access tokens are"
                    " issued for and checked against it",
                    err=True,
                )
                raise typer.Exit(2)
            public = listening_base("http", host, port, "/fhir")
        settings = Settings(store_url=store or default_store_url(), public_base_url=public, auth=auth == "on")
        try:
            log_config = logs.configure(log_level, log_format)
        except ValueError as exc:
            raise serving.fail(str(exc), serving.EXIT_USAGE) from None
        settings.log_level, settings.log_format = log_level, log_format
        serving.check_port(host, port)
        serving.check_store(settings)
        if not settings.auth:
            banner = "!" * 78
            typer.secho(
                f"{banner}\n  AUTH IS OFF: no tokens, no consent checks, no audit. Anyone on this machine"
                " can read and\n  change every record. Local trials only; never with real children's data."
                f"\n{banner}",
                fg=typer.colors.RED,
                bold=True,
                err=True,
            )
        typer.echo(
            f"Termtem FHIR server: http://{host}:{port}{settings.base_path}"
            f" (store {redact_url(settings.store_url)})"
        )
        from fhir_server.api import workers as worker_processes

        count = worker_processes.usable_count(settings, workers or worker_processes.default_count())
        if count > 1:
            worker_processes.prepare(settings)  # once, before the workers start
        app = create_app(settings)
        # Where notifications point when no public URL is configured (auth off, on loopback).
        app.state.listening_base = listening_base("http", host, port, settings.base_path)
        if count == 1:
            serving.run(app, host, port, log_config, log_level, settings.max_header_bytes)
            return
        import uvicorn

        from fhir_server.api.protocol import uvicorn_options

        app.state.store_prepared = True  # each worker skips loading the shipped resources
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=log_config,
            log_level=log_level,
            access_log=False,
            **uvicorn_options(settings.max_header_bytes),
        )
        typer.echo(f"{count} worker processes")
        worker_processes.run(config, count)
