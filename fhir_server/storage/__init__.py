"""Storage backends behind one contract (``base.Store``); ``open_store`` picks one from a URL."""

from __future__ import annotations

from fhir_server.config import Settings
from fhir_server.storage.base import Store


def create_store(settings: Settings) -> Store:
    """The backend named by ``settings.store_url`` (not yet opened)."""
    url = settings.store_url
    if url.startswith("sqlite:///"):
        from fhir_server.storage.sqlite.store import SqliteStore

        return SqliteStore(url, synchronous=settings.sqlite_synchronous)
    if url.startswith(("mongodb://", "mongodb+srv://", "mongomock://")):
        from fhir_server.storage.mongo import MongoStore  # type: ignore[import-not-found]

        return MongoStore(url)  # type: ignore[no-any-return]
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///PATH or mongodb://HOST/DB")
