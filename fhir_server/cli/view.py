"""``termtem view``: list the flat views and run one to CSV, NDJSON, JSON or Parquet.

Against a running server (``--server`` with a token) the rows are what that client may see; against a
store (``--store``, an operator holding the store) they are everything in it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import typer

from fhir_server.config import Settings, default_store_url

view_app = typer.Typer(help="SQL on FHIR views: list them, run one to a file.", no_args_is_help=True)


@view_app.command("list")
def list_views() -> None:
    """The views this release ships (a server also has those an admin added: GET ViewDefinition)."""
    from fhir_server.analytics.views.library import shipped_views

    for view in shipped_views():
        typer.echo(f"{view['id']}\t{view['resource']}\t{view.get('title', '')}")


def _definition(view: str) -> dict[str, Any]:
    from fhir_server.analytics.views.library import shipped_views

    path = Path(view)
    if path.suffix == ".json" and path.exists():
        return orjson.loads(path.read_bytes())
    for item in shipped_views():
        if view in (item["id"], item.get("name"), item.get("url")):
            return item
    raise typer.BadParameter(f"no view {view!r}: name a shipped view (termtem view list) or a .json file")


@view_app.command("run")
def run(
    view: str = typer.Argument(
        ..., help="A shipped view's name (termtem view list) or a ViewDefinition .json file."
    ),
    fmt: str = typer.Option("csv", "--format", help="csv, ndjson, json or parquet."),
    out: Path = typer.Option(
        None, "--out", help="Write here (default: standard output; required for parquet)."
    ),
    server: str = typer.Option(
        None, "--server", help="FHIR base of a running server (rows: what the token may see)."
    ),
    token: str = typer.Option(None, "--token", envvar="TERMTEM_TOKEN", help="Access token for --server."),
    store: str = typer.Option(
        None, "--store", help="Store URL (default $TERMTEM_STORE or the local sqlite store)."
    ),
) -> None:
    """Run a view and write its rows."""
    from fhir_server.analytics.views.output import FORMATS

    if fmt not in ("csv", "ndjson", "json", "parquet"):
        raise typer.BadParameter("--format takes csv, ndjson, json or parquet")
    if fmt == "parquet" and out is None:
        raise typer.BadParameter("parquet is binary: give --out FILE")
    definition = _definition(view)
    if server:
        data = _over_http(server, token, definition, fmt)
    else:
        data = asyncio.run(_in_process(store, definition, fmt))
    if out is None:
        sys.stdout.buffer.write(data)
    else:
        out.write_bytes(data)
        typer.echo(f"wrote {len(data)} bytes to {out} ({FORMATS[fmt][1]})", err=True)


def _over_http(server: str, token: str | None, definition: dict[str, Any], fmt: str) -> bytes:
    import httpx

    headers = {"Content-Type": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_format", "valueCode": fmt},
            {"name": "viewResource", "resource": definition},
        ],
    }
    reply = httpx.post(f"{server.rstrip('/')}/$viewdefinition-run", json=body, headers=headers, timeout=600)
    if reply.status_code != 200:
        raise typer.BadParameter(f"the server answered {reply.status_code}: {reply.text[:500]}")
    return reply.content


async def _in_process(store_url: str | None, definition: dict[str, Any], fmt: str) -> bytes:
    from fhir_server.analytics.views.library import check_view
    from fhir_server.analytics.views.run import RunOptions, run_view
    from fhir_server.interactions.context import RequestContext
    from fhir_server.interactions.errors import FhirError
    from fhir_server.storage import create_store

    settings = Settings(store_url=store_url or default_store_url())
    store = create_store(settings)
    await store.open()
    try:
        ctx = RequestContext(store=store, settings=settings, base_url="")
        return await run_view(ctx, check_view(definition), RunOptions(fmt=fmt))
    except FhirError as exc:
        raise typer.BadParameter(f"{exc.diagnostics} ({', '.join(exc.expression or [])})") from None
    finally:
        await store.close()


def register(app: typer.Typer) -> None:
    app.add_typer(view_app, name="view")
