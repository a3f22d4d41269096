"""``termtem identity``: the data steward's tools on a store (links, review queue, duplicates report,
link, unlink, merge, undo a merge, and the job that links the Patients already stored).

The operator holds the store itself, as with ``termtem load --store``; every change is recorded as an
AuditEvent by ``termtem-cli``, like the same operations over HTTP.
"""

from __future__ import annotations

import asyncio
import csv
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import typer

from fhir_server.config import default_store_url

identity_app = typer.Typer(help="One child across agencies: golden records, links and the review queue.")
_STORE = typer.Option(None, help="Store URL (default: $TERMTEM_STORE or ./termtem-data).")
_BY = typer.Option("termtem-cli", "--by", help="Who decides, for the link state and the audit record.")


def _with_store(work: Callable[[Any], Awaitable[Any]], store_url: str | None) -> Any:
    from fhir_server.config import Settings
    from fhir_server.storage import create_store

    async def run() -> Any:
        store = create_store(Settings(store_url=store_url or default_store_url()))
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


async def _audit(store: Any, summary: str, written: list[Any], status: int = 200) -> None:
    from fhir_server.security import audit

    record = audit.AuditRecord(
        interaction="operation",
        outcome_status=status,
        client_id="termtem-cli",
        client_name="termtem identity (operator)",
        purpose="HOPERAT",
        description=summary,
        touched=[(s.resource_type, s.id, s.body) for s in written],
    )
    await audit.write_audit(store, record)


def _change(name: str, call: Callable[[Any], Awaitable[Any]], store_url: str | None) -> None:
    from fhir_server.interactions.errors import FhirError

    async def work(store: Any) -> None:
        try:
            change = await call(store)
        except FhirError as error:
            await _audit(store, f"{name} refused: {error.diagnostics}", [], error.status)
            typer.echo(f"refused ({error.status}): {error.diagnostics}", err=True)
            raise typer.Exit(1) from None
        await _audit(store, change.summary, change.written)
        typer.echo(change.summary)

    _with_store(work, store_url)


@identity_app.command()
def link(source: str, golden: str, store: str = _STORE, by: str = _BY) -> None:
    """Link source Patient SOURCE to the child GOLDEN (a manual, certain link)."""
    from fhir_server.identity import steward

    _change("link", lambda s: steward.link(s, _id(source), _id(golden), by), store)


@identity_app.command()
def unlink(source: str, store: str = _STORE, by: str = _BY) -> None:
    """Take source Patient SOURCE out of its child (it becomes a child of its own)."""
    from fhir_server.identity import steward

    _change("unlink", lambda s: steward.unlink(s, _id(source), by), store)


@identity_app.command()
def merge(from_golden: str, into_golden: str, store: str = _STORE, by: str = _BY) -> None:
    """Merge golden record FROM_GOLDEN into INTO_GOLDEN (refused for different valid CIDs)."""
    from fhir_server.identity import steward

    _change("merge", lambda s: steward.merge(s, _id(from_golden), _id(into_golden), by), store)


@identity_app.command()
def unmerge(golden: str, store: str = _STORE, by: str = _BY) -> None:
    """Undo the merge of golden record GOLDEN."""
    from fhir_server.identity import steward

    _change("unmerge", lambda s: steward.unmerge(s, _id(golden), by), store)


@identity_app.command("not-match")
def not_match(golden: str, other: str, store: str = _STORE, by: str = _BY) -> None:
    """Record that golden records GOLDEN and OTHER are different children (drops the review item)."""
    from fhir_server.identity import steward

    _change("not-match", lambda s: steward.not_match(s, _id(golden), _id(other), by), store)


@identity_app.command()
def links(patient: str, store: str = _STORE) -> None:
    """The child PATIENT (a source or golden record) belongs to: its links and review items."""
    from fhir_server.identity import steward

    async def work(s: Any) -> None:
        golden, items = await steward.links_of(s, _id(patient))
        await _audit(
            s, f"identity links of Patient/{patient} listed", [golden.stored] if golden.stored else []
        )
        typer.echo(f"golden Patient/{golden.id}")
        for item in golden.state.links:
            typer.echo(
                f"  source Patient/{item.source}  {item.assurance} {item.method} {item.rule}"
                f" {item.when} by {item.by}"
            )
        for candidate in items:
            typer.echo(
                f"  review Patient/{candidate.other}  {candidate.grade} {candidate.score:.3f}"
                f"  {'; '.join(candidate.reasons)}"
            )

    _with_store(work, store)


@identity_app.command()
def duplicates(
    store: str = _STORE,
    output: str = typer.Option("-", "--out", help="Where to write the report (- for standard output)."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    limit: int = typer.Option(1000, help="At most this many suspected duplicates."),
) -> None:
    """The suspected-duplicates report: review items with both children described, best score first."""
    from fhir_server.identity import steward

    if fmt not in ("table", "csv", "json"):
        raise typer.BadParameter("use table, csv or json", param_hint="--format")

    async def work(s: Any) -> list[dict[str, Any]]:
        rows = await steward.suspected_duplicates(s, limit)
        await _audit(s, f"suspected-duplicates report ({len(rows)} pairs)", [])
        return rows

    rows: list[dict[str, Any]] = _with_store(work, store)
    out = sys.stdout if output == "-" else open(output, "w", encoding="utf-8", newline="")  # noqa: SIM115
    try:
        if fmt == "json":
            out.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["golden", "candidate"])
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "reasons": "; ".join(row["reasons"])})
        else:
            for row in rows:
                out.write(
                    f"{row['score']:.3f} {row['grade']:9}"
                    f" Patient/{row['golden']} ~ Patient/{row['candidate']}\n"
                    f"    {row['golden_description']}\n    {row['candidate_description']}\n"
                    f"    {'; '.join(row['reasons'])}\n"
                )
            out.write(f"{len(rows)} suspected duplicate(s)\n")
    finally:
        if out is not sys.stdout:
            out.close()


@identity_app.command("link-existing")
def link_existing(
    store: str = _STORE,
    restart: bool = typer.Option(False, help="Go over every record again from the first."),
) -> None:
    """Link the Patients already stored (resumable: an interrupted run carries on from its checkpoint)."""
    from fhir_server.identity import job

    async def work(s: Any) -> dict[str, Any]:
        record = await job.run(
            s, progress=lambda r: typer.echo(f"  {r['processed']} records", err=True), restart=restart
        )
        if record["status"] != "complete":
            reason = f"{record['status']} {record.get('error', '')}".strip()
            typer.echo(f"linking job {record.get('id')}: {reason}", err=True)
            raise typer.Exit(1)
        await _audit(s, f"link-existing: {record['processed']} records, {record['linked']} linked", [])
        return record

    record = _with_store(work, store)
    typer.echo(
        f"{record['processed']} source records: {record['linked']} linked to another agency's child,"
        f" {record['created']} golden records made, {record['queued']} review items"
    )


def _id(value: str) -> str:
    return value.rsplit("/", 1)[-1]


def register(app: typer.Typer) -> None:
    app.add_typer(identity_app, name="identity")
