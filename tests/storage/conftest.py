"""Every Store backend runs the same contract suite: add a backend to STORE_FACTORIES."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from fhir_server.storage.base import Store
from fhir_server.storage.sqlite.store import SqliteStore


def _sqlite(tmp_path: Path) -> Store:
    return SqliteStore(f"sqlite:///{tmp_path / 'contract.sqlite'}")


STORE_FACTORIES: dict[str, Callable[[Path], Store]] = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    store = STORE_FACTORIES[request.param](tmp_path)
    await store.open()
    yield store
    await store.close()
