"""``termtem agency set|list|remove``: the registry of what each agency is (its type and identifiers).

Access decisions read an agency's type and identifiers from this registry, never from the agency's own
Organization resource; a change applies from each of its clients' next token.
"""

from __future__ import annotations

from typing import Any

import typer

from fhir_server.cli.clients import with_store

agency_app = typer.Typer(
    help="Set and list each agency's type and identifiers (what consents naming agencies match).",
    no_args_is_help=True,
)


@agency_app.command("set")
def set_agency(
    organization: str = typer.Argument(..., help="The agency, as Organization/ID."),
    agency_type: str = typer.Option(
        None, "--type", help="th-agency-type code: hospital, health-centre, school, childcare-centre, ..."
    ),
    identifiers: list[str] = typer.Option(
        None, "--identifier", help="SYSTEM|VALUE (repeatable); replaces the identifiers held."
    ),
    store: str = typer.Option(None, "--store", help="Store URL."),
) -> None:
    """Set an agency's type (and identifiers). Its clients' next tokens carry the change."""
    from fhir_server.security.agencies import AgencyRecord, AgencyRegistry
    from fhir_server.workflow.agencies import resolve_stored

    async def work(db: Any) -> tuple[AgencyRecord, list[str]]:
        registry = AgencyRegistry(db)
        known = await registry.get(organization)
        kind = agency_type if agency_type is not None else (known.agency_type if known else None)
        ids = tuple(identifiers) if identifiers else (known.identifiers if known else ())
        record = await registry.set(AgencyRecord(organization, kind, ids))
        # Referrals that named the agency by one of these identifiers now refer to it.
        return record, await resolve_stored(db)

    try:
        record, resolved = with_store(store, work)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    ids = ", ".join(record.identifiers) or "no identifiers"
    typer.echo(f"{record.organization}: type {record.agency_type or '(none)'}; {ids}")
    if resolved:
        typer.echo(f"{len(resolved)} stored resources naming it by identifier now refer to it")


@agency_app.command("list")
def list_agencies(store: str = typer.Option(None, "--store", help="Store URL.")) -> None:
    """Every agency with a registered client or a registry entry, and what its own Organization claims
    (a hint to confirm with ``agency set``, never used for access)."""
    from fhir_server.security.agencies import AgencyRegistry, claimed_type
    from fhir_server.security.clients import ClientRegistry

    async def work(db: Any) -> list[tuple[str, str | None, tuple[str, ...], str | None]]:
        held = {a.organization: a for a in await AgencyRegistry(db).list()}
        orgs = sorted(set(held) | {c.organization for c in await ClientRegistry(db).list()})
        rows = []
        for org in orgs:
            record = held.get(org)
            rows.append(
                (
                    org,
                    record.agency_type if record else None,
                    record.identifiers if record else (),
                    await claimed_type(db, org),
                )
            )
        return rows

    for org, kind, ids, claimed in with_store(store, work):
        line = f"{org}\ttype={kind or '(none)'}\tidentifiers={','.join(ids) or '-'}"
        if kind is None and claimed:
            line += (
                f"\tits Organization claims '{claimed}'"
                f" (unconfirmed: termtem agency set {org} --type {claimed})"
            )
        typer.echo(line)


@agency_app.command("remove")
def remove_agency(
    organization: str = typer.Argument(...), store: str = typer.Option(None, "--store", help="Store URL.")
) -> None:
    """Forget an agency's type and identifiers (its clients keep working, without them)."""
    from fhir_server.security.agencies import AgencyRegistry

    async def work(db: Any) -> bool:
        return bool(await AgencyRegistry(db).remove(organization))

    if not with_store(store, work):
        typer.echo(f"error: {organization} is not in the agency registry", err=True)
        raise typer.Exit(1)
    typer.echo(f"{organization} removed from the agency registry")


def register(app: typer.Typer) -> None:
    app.add_typer(agency_app, name="agency")
