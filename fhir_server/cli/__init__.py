"""The ``termtem`` command line. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="termtem",
    help="Termtem: a FHIR R4 server for Thailand's child, youth and family services.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Termtem: a FHIR R4 server for Thailand's child, youth and family services."""


# Each subcommand module defines ``register(app)``; they import lazily what their command needs.
from fhir_server.cli import clients, copy, demo, generate, importer, load, serve  # noqa: E402

for _module in (serve, load, generate, demo, importer, clients, copy):
    _module.register(app)


def main() -> None:
    app()
