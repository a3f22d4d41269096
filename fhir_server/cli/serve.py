"""``termtem serve``: run the FHIR server."""

from __future__ import annotations

import typer

from fhir_server.config import Settings, default_store_url


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
        port: int = typer.Option(8080, help="TCP port."),
        store: str = typer.Option(
            None, help="Store URL: sqlite:///PATH (default ./termtem-data/termtem.sqlite, or $TERMTEM_STORE)."
        ),
        public_url: str = typer.Option("", help="Public FHIR base URL when behind a proxy."),
        log_level: str = typer.Option("info", help="Log level: debug, info, warning, error."),
    ) -> None:
        """Serve the FHIR R4 API at http://HOST:PORT/fhir."""
        import uvicorn

        from fhir_server.api.app import create_app

        settings = Settings(store_url=store or default_store_url(), public_base_url=public_url)
        typer.echo(
            f"Termtem FHIR server: http://{host}:{port}{settings.base_path} (store {settings.store_url})"
        )
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False)
