"""``termtem backup`` and ``termtem restore``: a consistent copy of the embedded store, taken while the
server runs, and putting one back (with the server stopped)."""

from __future__ import annotations

from pathlib import Path

import typer

from fhir_server.config import default_store_url


def _size(n: int) -> str:
    return f"{n / 1_048_576:.1f} MB" if n >= 1_048_576 else f"{n / 1024:.0f} kB"


def register(app: typer.Typer) -> None:
    @app.command()
    def backup(
        store: str = typer.Option(None, help="Store URL (default: $TERMTEM_STORE or ./termtem-data)."),
        to: Path = typer.Option(
            None, "--to", help="Backup file to write (default ./termtem-backups/termtem-TIME.sqlite)."
        ),
    ) -> None:
        """Copy the embedded store consistently, even while a server is using it."""
        from fhir_server.cli.serving import EXIT_UNAVAILABLE, EXIT_USAGE, fail
        from fhir_server.storage import BadStoreUrl
        from fhir_server.storage.backup import BackupError, default_backup_path
        from fhir_server.storage.backup import backup as take_backup

        try:
            report = take_backup(store or default_store_url(), to or default_backup_path())
        except BadStoreUrl as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except BackupError as exc:
            raise fail(str(exc), EXIT_UNAVAILABLE) from None
        typer.echo(
            f"backup written to {report.path} ({_size(report.bytes)}): {report.resources} resources,"
            f" {report.versions} versions, schema version {report.schema_version}; integrity check ok"
        )

    @app.command()
    def restore(
        backup_file: Path = typer.Argument(..., metavar="BACKUP", help="A file made by `termtem backup`."),
        store: str = typer.Option(
            None, help="Store URL to restore into (default: $TERMTEM_STORE or ./termtem-data)."
        ),
    ) -> None:
        """Put a backup in place of the store (stop the server first; the old store is kept beside it)."""
        from fhir_server.cli.serving import EXIT_UNAVAILABLE, EXIT_USAGE, fail
        from fhir_server.storage import BadStoreUrl
        from fhir_server.storage.backup import BackupError
        from fhir_server.storage.backup import restore as put_back

        try:
            report, kept = put_back(backup_file, store or default_store_url())
        except BadStoreUrl as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except BackupError as exc:
            raise fail(str(exc), EXIT_UNAVAILABLE) from None
        typer.echo(
            f"restored {report.resources} resources ({report.versions} versions, schema version"
            f" {report.schema_version}) into {report.path}"
        )
        if kept is not None:
            typer.echo(f"the store it replaced is kept at {kept}")
