"""``termtem load``: load bundles and NDJSON into a running server or straight into a store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from fhir_server.config import default_store_url


def register(app: typer.Typer) -> None:
    @app.command()
    def load(
        paths: list[Path] = typer.Argument(
            ..., help="Bundle (.json) or NDJSON (.ndjson) files, or folders of them."
        ),
        server: str = typer.Option(
            None, help="FHIR base URL of a running server, e.g. http://127.0.0.1:8080/fhir."
        ),
        store: str = typer.Option(
            None,
            help="Store URL to load into directly (default: $TERMTEM_STORE or "
            "./termtem-data) when --server is not given.",
        ),
        workers: int = typer.Option(1, help="Bundles in flight at once."),
        dedupe: bool = typer.Option(
            True,
            "--dedupe/--no-dedupe",
            help="Turn POSTs of Organization, Practitioner, Location and PractitionerRole into conditional "
            "creates on their identifier, so Synthea's repeated entries land once.",
        ),
        token: str = typer.Option(None, envvar="TERMTEM_TOKEN", help="Bearer token for --server."),
        agency: str = typer.Option(
            None,
            "--agency",
            help="Loading into a store: the writing agency (Organization/ID) to tag every resource with, "
            "so that agency's clients see the data (untagged data is visible to admin clients only).",
        ),
    ) -> None:
        """Load transaction/batch bundles and NDJSON files, with progress and a summary."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from fhir_server.cli.serving import EXIT_USAGE, fail
        from fhir_server.loading import DEDUPLICATED_TYPES, LoadSummary, load_paths
        from fhir_server.loading.runner import AuthRefused, ServerTarget, StoreTarget
        from fhir_server.loading.sources import Submission, files_in
        from fhir_server.storage import BadStoreUrl

        if server and store:
            raise typer.BadParameter("give --server or --store, not both")
        try:
            files = files_in(paths)
        except FileNotFoundError as exc:
            raise typer.BadParameter(str(exc)) from None
        if server and agency:
            raise typer.BadParameter("--agency is for loads into a store; over --server the token decides")
        try:
            target: ServerTarget | StoreTarget = (
                ServerTarget(server, token) if server else StoreTarget(store or default_store_url(), agency)
            )
        except BadStoreUrl as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--agency") from None
        console = Console(stderr=True)

        async def run() -> LoadSummary:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[entries]} entries"),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("loading", total=None, entries=0)
                done_entries = 0

                def tick(item: Submission) -> None:
                    nonlocal done_entries
                    done_entries += item.entries
                    progress.update(task, advance=1, entries=done_entries)

                try:
                    return await load_paths(
                        files,
                        target,
                        workers=workers,
                        dedupe=DEDUPLICATED_TYPES if dedupe else (),
                        on_progress=tick,
                    )
                finally:
                    await target.close()

        try:
            summary = asyncio.run(run())
        except AuthRefused as refused:
            console.print(f"[red]error:[/red] {refused}", soft_wrap=True, highlight=False)
            raise typer.Exit(1) from None
        table = Table(title="termtem load")
        for column in ("files", "bundles", "created", "updated", "failed bundles"):
            table.add_column(column, justify="right")
        table.add_row(
            str(len(files)),
            str(summary.bundles),
            str(summary.created),
            str(summary.updated),
            str(len(summary.failures)),
        )
        console.print(table)
        for failure in summary.failures:
            where = f" entry {failure.entry}" if failure.entry is not None else ""
            console.print(f"[red]failed[/red] {failure.source}{where}: {failure.reason}", soft_wrap=True)
        if summary.failures:
            raise typer.Exit(1)
