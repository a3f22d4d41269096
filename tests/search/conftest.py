"""Shared helpers: a real SQLite database with the store's tables and the search index."""

from __future__ import annotations

import sqlite3
import tarfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest

from fhir_server.search.extract import extract_index
from fhir_server.search.query import SearchQuery, parse_search
from fhir_server.search.result import SearchPage
from fhir_server.storage.sqlite.index import SCHEMA, delete_index, write_index
from fhir_server.storage.sqlite.search_sql import run_search

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
EXAMPLES = SHARED / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz"
SYNTHEA = SHARED / "testdata" / "synthea" / "R4"
BASE = "http://testserver/fhir"

STORE_DDL = [
    "CREATE TABLE resource(rid INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL,"
    " version INTEGER NOT NULL, last_updated TEXT NOT NULL, method TEXT NOT NULL, body BLOB NOT NULL,"
    " UNIQUE(type, id))",
    "CREATE TABLE history(seq INTEGER PRIMARY KEY, rid INTEGER NOT NULL, type TEXT NOT NULL,"
    " id TEXT NOT NULL, version INTEGER NOT NULL, last_updated TEXT NOT NULL, method TEXT NOT NULL,"
    " body BLOB NOT NULL)",
]


class SearchDb:
    """A minimal writer over the store's tables, enough to exercise extraction and search."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:")
        for ddl in STORE_DDL + SCHEMA:
            self.conn.execute(ddl)
        self._clock = 0

    def put(self, resource: dict[str, Any], last_updated: str | None = None) -> int:
        self._clock += 1
        stamp = last_updated or f"2024-01-01T00:00:{self._clock // 1000:02d}.{self._clock % 1000:03d}Z"
        row = self.conn.execute(
            "SELECT rid, version FROM resource WHERE type = ? AND id = ?",
            (resource["resourceType"], resource["id"]),
        ).fetchone()
        version = row[1] + 1 if row else 1
        body = orjson.dumps(
            {
                **resource,
                "meta": {**resource.get("meta", {}), "versionId": str(version), "lastUpdated": stamp},
            }
        )
        if row:
            rid = row[0]
            self.conn.execute(
                "UPDATE resource SET version=?, last_updated=?, method='PUT', body=? WHERE rid=?",
                (version, stamp, body, rid),
            )
        else:
            rid = self.conn.execute(
                "INSERT INTO resource(type, id, version, last_updated, method, body) VALUES (?,?,?,?,?,?)",
                (resource["resourceType"], resource["id"], version, stamp, "POST", body),
            ).lastrowid
        write_index(self.conn, rid, resource["resourceType"], extract_index(resource))
        return rid

    def put_all(self, resources: Iterable[dict[str, Any]]) -> None:
        for r in resources:
            self.put(r)

    def delete(self, resource_type: str, id_: str) -> None:
        rid = self.conn.execute(
            "SELECT rid FROM resource WHERE type=? AND id=?", (resource_type, id_)
        ).fetchone()[0]
        self.conn.execute("UPDATE resource SET method='DELETE', body=x'' WHERE rid=?", (rid,))
        delete_index(self.conn, rid)

    def page(
        self,
        resource_type: str | None,
        query: str,
        *,
        strict: bool = True,
        count: int = 100,
        compartment: tuple[str, str] | None = None,
    ) -> SearchPage:
        return run_search(self.conn, parsed_query(resource_type, query, strict, count, compartment))

    def ids(self, resource_type: str | None, query: str, **kw: Any) -> list[str]:
        return [m.id for m in self.page(resource_type, query, **kw).matches]

    def idset(self, resource_type: str | None, query: str, **kw: Any) -> set[str]:
        return set(self.ids(resource_type, query, **kw))


@cache
def example_resources() -> tuple[dict[str, Any], ...]:
    """Every resource of the HL7 R4 examples package that has an id (read once per session)."""
    out = []
    with tarfile.open(EXAMPLES) as tar:
        for member in tar.getmembers():
            if not member.name.endswith(".json") or "/other/" in member.name:
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            try:
                data = orjson.loads(f.read())
            except orjson.JSONDecodeError:
                continue
            if isinstance(data, dict) and data.get("resourceType") and data.get("id"):
                out.append(data)
    return tuple(out)


@pytest.fixture
def db() -> SearchDb:
    return SearchDb()


@pytest.fixture(scope="session")
def examples_db() -> SearchDb:
    d = SearchDb()
    seen: set[tuple[str, str]] = set()
    for r in example_resources():
        if r["resourceType"] in ("Bundle",) or (r["resourceType"], r["id"]) in seen:
            continue
        seen.add((r["resourceType"], r["id"]))
        d.put(r)
    return d


def parsed_query(
    resource_type: str | None,
    query: str,
    strict: bool = True,
    count: int = 100,
    compartment: tuple[str, str] | None = None,
) -> SearchQuery:
    """A query string parsed as the HTTP layer would, for the backend-neutral search tests."""
    return parse_search(
        resource_type,
        parse_qsl(query, keep_blank_values=True),
        base_url=BASE,
        strict=strict,
        default_count=count,
        max_count=500,
        compartment=compartment,
    )
