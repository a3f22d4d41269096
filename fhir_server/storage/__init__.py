"""Storage backends behind one contract (``base.Store``); ``create_store`` picks one from a URL.

``open_store`` opens it within the configured timeout and turns every way that can fail (bad URL,
unreachable server, unreadable file, standalone MongoDB) into a ``StoreError`` whose message is one line
naming the store with its password redacted, so the CLI can print it and exit instead of a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

from fhir_server.config import Settings
from fhir_server.observability.redact import redact_url
from fhir_server.storage.base import Store

_HOW = "use sqlite:///PATH (e.g. sqlite:///termtem-data/termtem.sqlite) or mongodb://HOST[:PORT]/DB?replicaSet=NAME"


class StoreError(RuntimeError):
    """The store cannot be used; the message is one line meant for the operator."""


class BadStoreUrl(StoreError, ValueError):
    """The store URL names no backend we have."""


class StoreUnavailable(StoreError):
    """The store did not open: unreachable, refused, or not usable as it is."""


def create_store(settings: Settings) -> Store:
    """The backend named by ``settings.store_url`` (not yet opened)."""
    url = settings.store_url
    if url.startswith("sqlite:///"):
        if not url[len("sqlite:///") :]:
            raise BadStoreUrl(f"the store URL {url!r} names no file: {_HOW}")
        from fhir_server.storage.sqlite.store import SqliteStore

        return SqliteStore(url, synchronous=settings.sqlite_synchronous)
    if url.startswith(("mongodb://", "mongodb+srv://", "mongomock://")):
        from fhir_server.storage.mongo import MongoStore  # type: ignore[import-not-found]

        return MongoStore(url, timeout_seconds=settings.store_timeout_seconds)  # type: ignore[no-any-return]
    if "://" not in url:
        raise BadStoreUrl(f"the store URL {url!r} is a bare path: write sqlite:///{url} (or {_HOW})")
    raise BadStoreUrl(f"unsupported store URL {redact_url(url)!r}: {_HOW}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # pymongo's selection errors append a long topology description after the reason.
    return text.split("\n", 1)[0].split(", Timeout:", 1)[0].split(", Topology Description:", 1)[0][:300]


async def open_store(store: Store, settings: Settings) -> None:
    """Open ``store`` within ``settings.store_timeout_seconds``; raise ``StoreUnavailable`` if it fails."""
    try:
        await _open(store, settings)
    except BaseException:
        with contextlib.suppress(Exception):  # stop a driver's background tasks (pymongo's monitors)
            await asyncio.wait_for(store.close(), timeout=5)
        raise


async def _open(store: Store, settings: Settings) -> None:
    name = redact_url(store.url)
    timeout = settings.store_timeout_seconds
    try:
        await asyncio.wait_for(store.open(), timeout=timeout)
    except TimeoutError:
        raise StoreUnavailable(
            f"the store {name} did not answer within {timeout:g} s (TERMTEM_STORE_TIMEOUT)"
        ) from None
    except (OSError, sqlite3.Error) as exc:
        raise StoreUnavailable(f"cannot open the store {name}: {_first_line(exc)}") from None
    except StoreError:
        raise
    except Exception as exc:  # driver errors: pymongo's ServerSelectionTimeoutError, auth failures...
        if type(exc).__module__.startswith(("pymongo", "fhir_server.storage")):
            raise StoreUnavailable(f"cannot use the store {name}: {_first_line(exc)}") from None
        raise
