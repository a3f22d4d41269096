"""``termtem copy``: move every resource with its whole history from one store to another.

So a site can outgrow the embedded store (SQLite to MongoDB) or take a copy back, without losing
a version: history is streamed in commit order and written verbatim, search indexes are rebuilt on
the target, and the counts of both stores are compared at the end.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import typer

from fhir_server.config import Settings
from fhir_server.storage.base import HistoryQuery, Store, StoredResource

_BATCH = 500


def register(app: typer.Typer) -> None:
    @app.command()
    def copy(
        source: str = typer.Option(..., "--from", help="Store URL to read (sqlite:///PATH, mongodb://...)."),
        target: str = typer.Option(..., "--to", help="Store URL to write; must hold no resources yet."),
        kv: list[str] = typer.Option([], "--kv", help="Also copy this key/value namespace (repeatable)."),
        batch: int = typer.Option(_BATCH, min=1, help="Versions written per target transaction."),
    ) -> None:
        """Copy every resource with its history (and chosen key/value namespaces) to an empty store."""
        try:
            result = asyncio.run(copy_store(source, target, kv_namespaces=kv, batch=batch))
        except CopyError as exc:
            typer.secho(f"copy failed: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from exc
        typer.echo(
            f"copied {result['versions']} versions of {result['resources']} resources"
            f" and {result['kv']} key/value entries; counts match"
        )


class CopyError(RuntimeError):
    """The copy could not start, or the stores disagree afterwards."""


def _open(url: str) -> Store:
    from fhir_server.storage import create_store

    return create_store(Settings(store_url=url))


async def _version_count(store: Store) -> int:
    page = await store.history(HistoryQuery(count=1))
    return page.total or 0


async def _live_count(store: Store) -> int:
    return sum([1 async for _ in store.iterate()])


async def _load_custom_parameters(store: Store) -> None:
    # Index rows of the target must include the site's own SearchParameters, as on the source.
    from fhir_server.search import registry

    async for stored in store.iterate("SearchParameter"):
        registry.on_search_parameter_written(orjson.loads(stored.body))


def _with_index(chunk: list[StoredResource]) -> list[tuple[StoredResource, Any]]:
    """Index rows for the last version of each resource in ``chunk``; earlier ones are replaced anyway."""
    from fhir_server.search.extract import extract_index

    last = {(v.resource_type, v.id): n for n, v in enumerate(chunk)}
    out: list[tuple[StoredResource, Any]] = []
    for n, version in enumerate(chunk):
        current = last[(version.resource_type, version.id)] == n and not version.deleted
        out.append((version, extract_index(orjson.loads(version.body)) if current else None))
    return out


async def copy_store(
    source_url: str,
    target_url: str,
    *,
    kv_namespaces: list[str] | None = None,
    batch: int = _BATCH,
    progress: bool = True,
) -> dict[str, int]:
    """Copy ``source_url`` into the empty ``target_url``; returns the counts that were checked."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from fhir_server.observability.redact import redact_url
    from fhir_server.storage import StoreError, open_store

    if source_url == target_url:
        raise CopyError("source and target are the same store")
    try:
        source, target = _open(source_url), _open(target_url)
        await open_store(source, Settings(store_url=source_url))
    except StoreError as exc:
        raise CopyError(str(exc)) from None
    try:
        try:
            await open_store(target, Settings(store_url=target_url))
        except StoreError as exc:
            raise CopyError(str(exc)) from None
        try:
            async for _ in target.iterate_history():
                raise CopyError(
                    f"the target store {redact_url(target_url)} already holds resources; copy needs an"
                    " empty one"
                )
            await _load_custom_parameters(source)
            total = await _version_count(source)
            columns = (TextColumn("copying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, disable=not progress) as bar:
                task = bar.add_task("versions", total=total)
                chunk: list[StoredResource] = []
                async for version in source.iterate_history():
                    chunk.append(version)
                    if len(chunk) >= batch:
                        await target.import_versions(_with_index(chunk))
                        bar.advance(task, len(chunk))
                        chunk = []
                if chunk:
                    await target.import_versions(_with_index(chunk))
                    bar.advance(task, len(chunk))
            copied_kv = 0
            for namespace in kv_namespaces or []:
                for key, value in await source.kv_list(namespace):
                    await target.kv_put(namespace, key, value)
                    copied_kv += 1
            counts = {
                "versions": (total, await _version_count(target)),
                "resources": (await _live_count(source), await _live_count(target)),
            }
            for what, (here, there) in counts.items():
                if here != there:
                    raise CopyError(f"the source has {here} {what} but the target {there}")
            return {"versions": total, "resources": counts["resources"][0], "kv": copied_kv}
        finally:
            await target.close()
    finally:
        await source.close()
