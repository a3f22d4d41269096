"""The ``termtem`` command line. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import importlib

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


# Modules that each define ``register(app)``; a module that is absent is simply skipped so the
# command list grows as capabilities land.
_COMMAND_MODULES = ["serve", "load", "generate", "demo", "importer", "clients", "copy"]

for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"fhir_server.cli.{_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"fhir_server.cli.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    app()
