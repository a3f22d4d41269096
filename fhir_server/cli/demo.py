"""``termtem demo``: a synthetic Thai population on a loopback-only server with auth off, in one command."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from fhir_server.demo import DEFAULT_CHILDREN, DEFAULT_DATA_DIR

_LOOPBACK = "127.0.0.1"  # demo mode has no auth, so it never listens beyond this machine


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        port: int = typer.Option(8080, min=1, max=65535, help="TCP port on 127.0.0.1."),
        children: int = typer.Option(DEFAULT_CHILDREN, min=1, help="Synthetic children to generate."),
        seed: int = typer.Option(1, help="Generator seed: the same seed gives the same population."),
        data_dir: Path = typer.Option(
            DEFAULT_DATA_DIR, help="Folder for the demo store and generated files."
        ),
        keep: bool = typer.Option(
            False,
            "--keep/--fresh",
            help="Reuse the store of an earlier demo in DATA_DIR instead of rebuilding.",
        ),
        log_level: str = typer.Option("warning", help="Log level: debug, info, warning, error."),
    ) -> None:
        """Load a small generated Thai child population and serve it on 127.0.0.1 with auth OFF."""
        from fhir_server.api.app import create_app
        from fhir_server.cli import serving
        from fhir_server.config import Settings
        from fhir_server.demo import DemoLoadError, banner, prepare_demo
        from fhir_server.observability import logs

        try:
            log_config = logs.configure(log_level, "plain")
        except ValueError as exc:
            raise serving.fail(str(exc), serving.EXIT_USAGE) from None
        serving.check_port(_LOOPBACK, port)  # before minutes of generating, not after
        if not keep:
            typer.echo(
                f"Generating and loading {children} children (seed {seed}) into {data_dir}...", err=True
            )
        try:
            data = asyncio.run(prepare_demo(data_dir, children=children, seed=seed, fresh=not keep))
        except DemoLoadError as error:
            typer.echo(f"demo: {error}", err=True)
            raise typer.Exit(1) from None
        settings = Settings(store_url=data.store_url, auth=False, data_dir=data_dir)
        typer.echo(banner(data, f"http://{_LOOPBACK}:{port}{settings.base_path}"))
        serving.run(create_app(settings), _LOOPBACK, port, log_config, log_level, settings.max_header_bytes)
