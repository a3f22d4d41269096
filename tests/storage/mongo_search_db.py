"""``SearchDb`` (tests/search/conftest.py) over the Mongo store on the test double.

Same methods and the same stamping, so the search suite's own tests run unchanged on MongoDB's
filters: the Mongo test modules import them and swap this class in.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

import orjson

from fhir_server.search.extract import extract_index
from fhir_server.search.result import SearchPage
from fhir_server.storage.base import StoredResource
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.mongo.double import forget
from tests.search.conftest import parsed_query

BASE = "http://testserver/fhir"


class MongoSearchDb:
    """A synchronous face over a fresh ``MongoStore`` on its own event loop."""

    def __init__(self) -> None:
        self._name = f"search-{uuid.uuid4().hex}"
        self._loop = asyncio.new_event_loop()
        self.store = MongoStore(f"mongomock://{self._name}/termtem")
        self._run(self.store.open())
        self._clock = 0

    def _run(self, work: Any) -> Any:
        return self._loop.run_until_complete(work)

    def close(self) -> None:
        self._run(self.store.close())
        self._loop.close()
        forget(self._name)

    def put(self, resource: dict[str, Any], last_updated: str | None = None) -> int:
        self._clock += 1
        stamp = last_updated or f"2024-01-01T00:00:{self._clock // 1000:02d}.{self._clock % 1000:03d}Z"

        async def write() -> int:
            async with self.store.transaction() as tx:
                current = await tx.read(resource["resourceType"], resource["id"])
                version = current.version + 1 if current else 1
                body = orjson.dumps(
                    {
                        **resource,
                        "meta": {**resource.get("meta", {}), "versionId": str(version), "lastUpdated": stamp},
                    }
                )
                await tx.put(
                    StoredResource(
                        resource["resourceType"],
                        resource["id"],
                        version,
                        stamp,
                        "PUT" if current else "POST",
                        body,
                    ),
                    extract_index(resource),
                )
            return version

        return int(self._run(write()))

    def put_all(self, resources: Iterable[dict[str, Any]]) -> None:
        for r in resources:
            self.put(r)

    def delete(self, resource_type: str, id_: str) -> None:
        async def write() -> None:
            async with self.store.transaction() as tx:
                current = await tx.read(resource_type, id_)
                assert current is not None
                await tx.delete(
                    StoredResource(
                        resource_type, id_, current.version + 1, current.last_updated, "DELETE", b""
                    )
                )

        self._run(write())

    def page(
        self,
        resource_type: str | None,
        query: str,
        *,
        strict: bool = True,
        count: int = 100,
        compartment: tuple[str, str] | None = None,
    ) -> SearchPage:
        q = parsed_query(resource_type, query, strict, count, compartment)
        page: SearchPage = self._run(self.store.search(q))
        return page

    def ids(self, resource_type: str | None, query: str, **kw: Any) -> list[str]:
        return [m.id for m in self.page(resource_type, query, **kw).matches]

    def idset(self, resource_type: str | None, query: str, **kw: Any) -> set[str]:
        return set(self.ids(resource_type, query, **kw))
