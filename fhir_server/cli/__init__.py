"""The ``termtem`` command line. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="termtem",
    help="Termtem: a FHIR R4 server for Thailand's child, youth and family services.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from fhir_server import FHIR_VERSION, __version__

        typer.echo(f"termtem {__version__} (FHIR {FHIR_VERSION})")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Termtem: a FHIR R4 server for Thailand's child, youth and family services."""


# Each subcommand module defines ``register(app)``; they import lazily what their command needs.
from fhir_server.cli import (  # noqa: E402
    agencies,
    backup,
    clients,
    copy,
    deliver,
    demo,
    export,
    generate,
    identity,
    importer,
    load,
    serve,
    users,
    view,
)

for _module in (
    serve,
    load,
    generate,
    demo,
    importer,
    clients,
    agencies,
    copy,
    backup,
    export,
    identity,
    view,
    users,
    deliver,
):
    _module.register(app)


def main() -> None:
    """The ``termtem`` entry point: a store that cannot be used ends any command with one line."""
    from fhir_server.cli.serving import EXIT_UNAVAILABLE, EXIT_USAGE, fail
    from fhir_server.config import BadSetting
    from fhir_server.storage import BadStoreUrl, StoreError

    try:
        app()
    except (BadStoreUrl, BadSetting) as exc:
        raise SystemExit(fail(str(exc), EXIT_USAGE).exit_code) from None
    except StoreError as exc:
        raise SystemExit(fail(str(exc), EXIT_UNAVAILABLE).exit_code) from None
