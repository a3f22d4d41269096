"""``termtem generate``: write a deterministic synthetic Thai child population to disk."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import date
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fhir_server.synthetic import (
    PopulationConfig,
    Summary,
    write_moph43,
    write_ndjson,
    write_transaction_bundles,
)


class OutputFormat(StrEnum):
    bundles = "bundles"
    ndjson = "ndjson"
    moph43 = "moph43"


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not a date (YYYY-MM-DD): {value}") from exc


def register(app: typer.Typer) -> None:
    @app.command()
    def generate(
        out: Path = typer.Option(..., "--out", help="Directory to write into (created if missing)."),
        children: int = typer.Option(None, "--children", min=1, help="Number of children to generate."),
        resources: int = typer.Option(
            None, "--resources", min=1, help="Stop once about this many resources are written (e.g. 1000000)."
        ),
        seed: int = typer.Option(1, "--seed", help="Same seed and size give byte-identical output."),
        output_format: OutputFormat = typer.Option(
            OutputFormat.ndjson,
            "--format",
            help="bundles: transaction Bundles; ndjson: one file per type; moph43: the 43-file tables "
            "(PERSON, ADDRESS, NUTRITION, EPI, PRENATAL, ANC, LABOR, NEWBORN, NEWBORNCARE, POSTNATAL) "
            "for termtem import --format moph43.",
        ),
        households_per_bundle: int = typer.Option(10, min=1, help="Households per transaction Bundle."),
        reference_date: str = typer.Option("2026-01-01", help="'Today' for the population (YYYY-MM-DD)."),
        suspected_delay_rate: float = typer.Option(
            None, min=0.0, max=1.0, help="Share of first DSPM screenings with a suspected delay."
        ),
        stateless_rate: float = typer.Option(None, min=0.0, max=1.0, help="Share of stateless children."),
    ) -> None:
        """Generate Bangkok children, guardians, agencies and their records as FHIR R4."""
        if (children is None) == (resources is None):
            raise typer.BadParameter("give exactly one of --children or --resources")
        config = PopulationConfig(reference_date=_date(reference_date))
        if suspected_delay_rate is not None:
            config = replace(config, suspected_delay_rate=suspected_delay_rate)
        if stateless_rate is not None:
            config = replace(config, stateless_rate=stateless_rate)
        console = Console()
        unit = "children" if children is not None else "resources"
        target = children if children is not None else resources
        columns = (
            TextColumn("[bold]generating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TimeElapsedColumn(),
        )
        started = time.perf_counter()
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("generate", total=target)

            def progress(resources_so_far: int, children_so_far: int) -> None:
                done = children_so_far if children is not None else resources_so_far
                bar.update(task, completed=min(done, target))

            if output_format is OutputFormat.bundles:
                summary = write_transaction_bundles(
                    out,
                    seed,
                    children,
                    resources=resources,
                    households_per_bundle=households_per_bundle,
                    config=config,
                    progress=progress,
                )
            elif output_format is OutputFormat.moph43:
                summary = write_moph43(
                    out, seed, children, resources=resources, config=config, progress=progress
                )
            else:
                summary = write_ndjson(
                    out, seed, children, resources=resources, config=config, progress=progress
                )
        _report(console, summary, out, output_format, time.perf_counter() - started)


def _report(
    console: Console, summary: Summary, out: Path, output_format: OutputFormat, seconds: float
) -> None:
    table = Table(title=f"Synthetic population in {out} ({output_format.value})")
    rows = output_format is OutputFormat.moph43
    table.add_column("Table" if rows else "Resource type")
    table.add_column("Rows" if rows else "Count", justify="right")
    for kind, count in sorted(summary.counts.items()):
        table.add_row(kind, f"{count:,}")
    table.add_row("[bold]Total", f"[bold]{summary.resources:,}")
    console.print(table)
    rate = summary.resources / seconds if seconds > 0 else 0.0
    console.print(
        f"{summary.children:,} children in {summary.households:,} households, {len(summary.files):,} files, "
        f"{seconds:.1f} s ({rate:,.0f} {'rows' if rows else 'resources'}/s)"
    )
