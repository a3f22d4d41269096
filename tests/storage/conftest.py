"""Every Store backend runs the same contract suite: add a backend to STORE_FACTORIES.

The Mongo backend always runs on the in-process test double (``mongomock://``); it also runs on a
real server whenever ``TERMTEM_TEST_MONGODB_URL`` is set (a fresh database per test, dropped after).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from fhir_server.storage.base import Store
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.mongo.double import forget
from fhir_server.storage.sqlite.store import SqliteStore


def _sqlite(tmp_path: Path) -> Store:
    return SqliteStore(f"sqlite:///{tmp_path / 'contract.sqlite'}")


def _mongo_double(tmp_path: Path) -> Store:
    return MongoStore(f"mongomock://contract-{uuid.uuid4().hex}/termtem")


def _mongo_server(tmp_path: Path) -> Store:
    database = f"termtem_test_{uuid.uuid4().hex[:12]}"
    return MongoStore(os.environ["TERMTEM_TEST_MONGODB_URL"], database=database)


STORE_FACTORIES: dict[str, Callable[[Path], Store]] = {"sqlite": _sqlite, "mongo-double": _mongo_double}
if os.environ.get("TERMTEM_TEST_MONGODB_URL"):
    STORE_FACTORIES["mongo-server"] = _mongo_server


async def dispose(store: Store) -> None:
    """Close ``store`` and throw its data away (Mongo databases are not files under tmp_path)."""
    if isinstance(store, MongoStore):
        if store.url.startswith("mongomock://"):
            await store.close()
            forget(store.url.split("://", 1)[1].split("/", 1)[0])
            return
        await store.client.drop_database(store._database_name)
    await store.close()


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    store = STORE_FACTORIES[request.param](tmp_path)
    await store.open()
    yield store
    await dispose(store)
