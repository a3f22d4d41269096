"""``termtem copy`` round-trips a store SQLite -> Mongo (test double) -> SQLite without losing anything."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from fhir_server.cli import app
from fhir_server.config import Settings
from fhir_server.search.extract import extract_index
from fhir_server.search.query import parse_search
from fhir_server.storage import create_store
from fhir_server.storage.base import HistoryQuery, StoredResource
from fhir_server.storage.mongo.double import forget


def _version(type_: str, id_: str, n: int, method: str = "PUT", **fields: Any) -> StoredResource:
    body = b"" if method == "DELETE" else orjson.dumps({"resourceType": type_, "id": id_, **fields})
    return StoredResource(type_, id_, n, f"2026-01-{n:02d}T00:00:00.000Z", method, body)  # type: ignore[arg-type]


async def _fill(url: str) -> None:
    store = create_store(Settings(store_url=url))
    await store.open()
    for i in range(30):
        async with store.transaction() as tx:
            v = _version(
                "Patient",
                f"p{i}",
                1,
                "POST",
                gender="female" if i % 2 else "male",
                name=[{"family": f"Fam{i}"}],
            )
            await tx.put(v, extract_index(orjson.loads(v.body)))
    for i in range(0, 30, 3):
        async with store.transaction() as tx:
            v = _version("Patient", f"p{i}", 2, gender="other", birthDate="2019-05-14")
            await tx.put(v, extract_index(orjson.loads(v.body)))
    async with store.transaction() as tx:
        await tx.delete(_version("Patient", "p1", 2, "DELETE"))
        body = b'{"resourceType":"Basic","id":"exact","extension":[{"url":"u","valueDecimal":1.00}]}'
        await tx.put(StoredResource("Basic", "exact", 1, "2026-02-01T00:00:00.000Z", "POST", body), None)
    await store.kv_put("clients", "school-1", {"role": "school"})
    await store.close()


async def _snapshot(url: str) -> dict[str, Any]:
    store = create_store(Settings(store_url=url))
    await store.open()
    query = parse_search(
        "Patient",
        [("gender", "other"), ("_sort", "_id")],
        base_url="",
        strict=True,
        default_count=100,
        max_count=100,
    )
    try:
        return {
            "history": [v async for v in store.iterate_history()],
            "current": sorted([(r.resource_type, r.id, r.version, r.body) async for r in store.iterate()]),
            "deleted": await store.read("Patient", "p1"),
            "instance": (await store.history(HistoryQuery(resource_type="Patient", id="p0"))).entries,
            "search": [m.id for m in (await store.search(query)).matches],
            "kv": await store.kv_list("clients"),
        }
    finally:
        await store.close()


def test_copy_round_trips_sqlite_mongo_sqlite(tmp_path: Path) -> None:
    first = f"sqlite:///{tmp_path / 'first.sqlite'}"
    name = f"copy-{uuid.uuid4().hex}"
    middle = f"mongomock://{name}/termtem"
    last = f"sqlite:///{tmp_path / 'last.sqlite'}"
    asyncio.run(_fill(first))
    runner = CliRunner()
    try:
        there = runner.invoke(app, ["copy", "--from", first, "--to", middle, "--kv", "clients"])
        assert there.exit_code == 0, there.output
        assert "copied 42 versions of 30 resources and 1 key/value entries" in there.output
        back = runner.invoke(app, ["copy", "--from", middle, "--to", last, "--kv", "clients"])
        assert back.exit_code == 0, back.output
        original = asyncio.run(_snapshot(first))
        assert len(original["history"]) == 42 and original["search"] == [
            f"p{i}" for i in sorted(range(0, 30, 3), key=str)
        ]
        assert asyncio.run(_snapshot(middle)) == original
        assert asyncio.run(_snapshot(last)) == original
        # the target must be empty: a second copy into it is refused and changes nothing
        again = runner.invoke(app, ["copy", "--from", first, "--to", last])
        assert again.exit_code == 1 and "already holds resources" in again.output
        assert asyncio.run(_snapshot(last)) == original
    finally:
        forget(name)


def test_copy_refuses_the_same_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    result = CliRunner().invoke(app, ["copy", "--from", url, "--to", url])
    assert result.exit_code == 1 and "same store" in result.output


@pytest.mark.parametrize("batch", ["1", "7"])
def test_small_batches_give_the_same_copy(tmp_path: Path, batch: str) -> None:
    first = f"sqlite:///{tmp_path / 'first.sqlite'}"
    name = f"copy-{uuid.uuid4().hex}"
    asyncio.run(_fill(first))
    try:
        result = CliRunner().invoke(
            app, ["copy", "--from", first, "--to", f"mongomock://{name}/db", "--batch", batch]
        )
        assert result.exit_code == 0, result.output
        assert (
            asyncio.run(_snapshot(f"mongomock://{name}/db"))["search"]
            == asyncio.run(_snapshot(first))["search"]
        )
    finally:
        forget(name)
