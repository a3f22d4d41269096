"""``termtem export``: a bulk export into a folder, from a running server or straight from a store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from fhir_server.config import default_store_url


def register(app: typer.Typer) -> None:
    @app.command()
    def export(
        folder: Path = typer.Argument(..., help="Folder for the NDJSON files and manifest.json."),
        server: str = typer.Option(None, help="FHIR base URL of a running server (a Bulk Data client run)."),
        token: str = typer.Option(None, envvar="TERMTEM_TOKEN", help="Bearer token for --server."),
        store: str = typer.Option(
            None, help="Store URL to export from in this process (default: $TERMTEM_STORE or ./termtem-data)."
        ),
        patient_level: bool = typer.Option(
            False, "--patients", help="Patient-level export (Patient/$export)."
        ),
        group: str = typer.Option(None, "--group", help="Group-level export of this Group id."),
        types: str = typer.Option(None, "--type", help="Resource types, comma-separated (_type)."),
        since: str = typer.Option(
            None, "--since", help="Only resources changed since this instant (_since)."
        ),
        type_filter: list[str] = typer.Option(
            [], "--type-filter", help="Type?criteria (_typeFilter), repeatable."
        ),
        elements: str = typer.Option(
            None, "--elements", help="Elements to keep, comma-separated (_elements)."
        ),
        patient: list[str] = typer.Option([], "--patient", help="Patient id to export (repeatable)."),
        deidentify: bool = typer.Option(
            False, "--deidentify", help="De-identify (always on for researchers)."
        ),
        project: str = typer.Option(
            None, "--project", help="With --store --deidentify: the research project whose pseudonyms to use."
        ),
        lenient: bool = typer.Option(
            False, "--lenient", help="Leave unsupported parameters out (handling=lenient)."
        ),
    ) -> None:
        """Run a FHIR Bulk Data export into FOLDER, with progress and a summary."""
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from fhir_server.export.client import (
            ExportFailed,
            ExportOptions,
            ExportResult,
            from_server,
            from_store,
        )

        if server and store:
            raise typer.BadParameter("give --server or --store, not both")
        if group and patient_level:
            raise typer.BadParameter("give --patients or --group, not both")
        if project and server:
            raise typer.BadParameter(
                "--project is for --store exports; over --server the client registry decides"
            )
        options = ExportOptions(
            level="group" if group else "patient" if patient_level else "system",
            group=group,
            types=[t.strip() for t in (types or "").split(",") if t.strip()],
            since=since,
            type_filters=list(type_filter),
            elements=[e.strip() for e in (elements or "").split(",") if e.strip()],
            patients=list(patient),
            deidentify=deidentify,
            lenient=lenient,
        )
        console = Console(stderr=True)

        async def run() -> ExportResult:
            with Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
            ) as bar:
                task = bar.add_task("starting the export", total=None)

                def show(message: str) -> None:
                    bar.update(task, description=message)

                if server:
                    return await from_server(server, options, folder, token=token, progress=show)
                return await from_store(
                    store or default_store_url(), options, folder, project=project, progress=show
                )

        try:
            result = asyncio.run(run())
        except (ExportFailed, ValueError) as exc:
            console.print(f"[red]export failed:[/red] {exc}")
            raise typer.Exit(1) from None
        table = Table(title=f"exported into {result.folder}")
        table.add_column("type")
        table.add_column("resources", justify="right")
        table.add_column("files", justify="right")
        for rtype, count in sorted(result.counts.items()):
            files = sum(1 for e in result.manifest["output"] if e["type"] == rtype)
            table.add_row(rtype, f"{count:,}", str(files))
        console.print(table)
        deleted = sum(e["count"] for e in result.manifest.get("deleted", []))
        errors = sum(e["count"] for e in result.manifest.get("error", []))
        total = sum(result.counts.values())
        extra = "".join(
            [
                f", {deleted:,} deletions" if deleted else "",
                f", {errors} notes in the error file" if errors else "",
            ]
        )
        deid = result.manifest.get("extension", {})
        for value in deid.values():
            suppressed = value.get("suppressedChildren", 0)
            extra += f"; de-identified (k={value.get('k')}, {suppressed} children suppressed)"
        console.print(f"{total:,} resources in {len(result.files)} files{extra}; manifest.json written")
