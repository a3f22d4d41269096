"""A Store wrapper that times every call into the backend for ``termtem_store_operation_duration_seconds``.

It adds no behaviour: each method calls the backend's and records how long it took (and failures).
Anything else (backend-specific attributes such as a SQLite path for backups) is reached through it.
``backend`` names the wrapped store, for code that must know the real backend type.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fhir_server.observability.metrics import Metrics
from fhir_server.storage.base import HistoryPage, HistoryQuery, Store, StoredResource, StoreTransaction

T = TypeVar("T")


class TimedStore:
    def __init__(self, backend: Store, metrics: Metrics) -> None:
        self.backend = backend
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    @property
    def url(self) -> str:
        return self.backend.url

    async def _timed(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        start = time.perf_counter()
        try:
            return await call()
        except Exception:
            self._metrics.store_errors.labels(operation).inc()
            raise
        finally:
            self._metrics.store_latency.labels(operation).observe(time.perf_counter() - start)

    async def open(self) -> None:
        await self._timed("open", self.backend.open)

    async def close(self) -> None:
        await self.backend.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTransaction]:
        start = time.perf_counter()
        failed = False
        try:
            async with self.backend.transaction() as tx:
                yield tx
        except BaseException:
            failed = True
            raise
        finally:
            if failed:
                self._metrics.store_errors.labels("transaction").inc()
            self._metrics.store_latency.labels("transaction").observe(time.perf_counter() - start)

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        return await self._timed("read", lambda: self.backend.read(resource_type, id))

    async def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        return await self._timed("vread", lambda: self.backend.vread(resource_type, id, version))

    async def history(self, query: HistoryQuery) -> HistoryPage:
        return await self._timed("history", lambda: self.backend.history(query))

    async def search(self, query: Any) -> Any:
        return await self._timed("search", lambda: self.backend.search(query))

    def iterate(self, resource_type: str | None = None) -> AsyncIterator[StoredResource]:
        return self.backend.iterate(resource_type)

    def iterate_history(self) -> AsyncIterator[StoredResource]:
        return self.backend.iterate_history()

    async def reindex(self, resource: StoredResource, index: Any) -> None:
        await self._timed("reindex", lambda: self.backend.reindex(resource, index))

    async def append(self, resources: Sequence[tuple[StoredResource, Any]]) -> None:
        await self._timed("append", lambda: self.backend.append(resources))

    async def import_versions(self, versions: Sequence[tuple[StoredResource, Any]]) -> None:
        await self._timed("import", lambda: self.backend.import_versions(versions))

    async def kv_get(self, namespace: str, key: str) -> dict[str, Any] | None:
        return await self._timed("kv_get", lambda: self.backend.kv_get(namespace, key))

    async def kv_put(self, namespace: str, key: str, value: dict[str, Any]) -> None:
        await self._timed("kv_put", lambda: self.backend.kv_put(namespace, key, value))

    async def kv_delete(self, namespace: str, key: str) -> bool:
        return await self._timed("kv_delete", lambda: self.backend.kv_delete(namespace, key))

    async def kv_list(self, namespace: str) -> list[tuple[str, dict[str, Any]]]:
        return await self._timed("kv_list", lambda: self.backend.kv_list(namespace))


def backend_of(store: Any) -> Any:
    """The real backend behind any wrapping (timing) layer."""
    while isinstance(store, TimedStore):
        store = store.backend
    return store
