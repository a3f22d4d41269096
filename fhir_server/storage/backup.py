"""Backing up and restoring the embedded (SQLite) store.

``backup`` takes a consistent copy while the server keeps serving: SQLite's online backup API copies
every page in one step inside one read transaction, so the copy is the database as of one moment
(WAL mode lets writers carry on meanwhile). The copy is checked (``PRAGMA integrity_check``) and
described (resources, versions, schema version) before it is reported as done.

``restore`` puts a checked backup in place of a store that no server is using: it refuses when another
connection holds the store open, refuses a backup from a newer schema, and keeps the store it replaces
beside it (``.before-restore-TIME``) unless there was none.

MongoDB deployments back up with MongoDB's own tools (``mongodump --oplog`` or filesystem snapshots of
a replica-set member); ``termtem copy`` moves data between stores but is not a point-in-time snapshot.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import orjson

from fhir_server.observability.redact import redact_url
from fhir_server.storage import BadStoreUrl, StoreError
from fhir_server.storage.files import private_dir
from fhir_server.storage.schema_version import KEY, NAMESPACE, SCHEMA_VERSION

_MONGO_HINT = (
    "termtem backup copies the embedded SQLite store; back up MongoDB with its own tools"
    " (mongodump --oplog, or a filesystem snapshot of a replica-set member): see docs/deployment.md"
)


class BackupError(StoreError):
    """The backup or restore could not be done; the message says why in one line."""


@dataclass(frozen=True)
class BackupReport:
    path: Path
    resources: int
    versions: int
    schema_version: int
    bytes: int


def sqlite_path(store_url: str) -> Path:
    if store_url.startswith(("mongodb://", "mongodb+srv://", "mongomock://")):
        raise BackupError(_MONGO_HINT)
    if not store_url.startswith("sqlite:///") or store_url.endswith(":memory:"):
        shown = redact_url(store_url)
        raise BadStoreUrl(f"backup and restore need a sqlite:///PATH store URL, not {shown!r}")
    return Path(store_url[len("sqlite:///") :])


def default_backup_path(now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return Path("termtem-backups") / f"termtem-{stamp}.sqlite"


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)


def describe(path: Path) -> BackupReport:
    """Check a store file's integrity and count what it holds (raises BackupError if it is damaged)."""
    try:
        conn = _read_only(path)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {path}: {exc}") from None
    try:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise BackupError(f"{path} is damaged (integrity check: {verdict})")
        resources = conn.execute("SELECT count(*) FROM resource WHERE method != 'DELETE'").fetchone()[0]
        versions = conn.execute("SELECT count(*) FROM history").fetchone()[0]
        row = conn.execute("SELECT value FROM kv WHERE namespace=? AND key=?", (NAMESPACE, KEY)).fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a Termtem store: {exc}") from None
    finally:
        conn.close()
    schema = int(orjson.loads(row[0]).get("version", 0)) if row else 1
    return BackupReport(path, resources, versions, schema, path.stat().st_size)


def backup(store_url: str, destination: Path) -> BackupReport:
    """A consistent copy of the store at ``destination`` (0600, in a 0700 folder), taken online."""
    source_path = sqlite_path(store_url)
    if not source_path.is_file():
        raise BackupError(f"there is no store at {source_path}")
    if destination.exists():
        raise BackupError(f"{destination} already exists; choose another --to")
    private_dir(destination.parent)
    partial = destination.with_name(destination.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    source = sqlite3.connect(source_path, timeout=30)  # only read: the server may be writing meanwhile
    target = sqlite3.connect(partial)
    try:
        source.backup(target, pages=-1)  # one step: one read transaction, one moment of the store
        target.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup of {source_path} failed: {exc}") from None
    finally:
        target.close()
        source.close()
    report = describe(partial)
    os.replace(partial, destination)
    return BackupReport(destination, report.resources, report.versions, report.schema_version, report.bytes)


def _in_use(path: Path) -> bool:
    """Whether another connection (a running server) has the store open."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def restore(backup_path: Path, store_url: str) -> tuple[BackupReport, Path | None]:
    """Put ``backup_path`` in place as the store; returns its description and where the old store went."""
    target = sqlite_path(store_url)
    if not backup_path.is_file():
        raise BackupError(f"there is no backup at {backup_path}")
    report = describe(backup_path)
    if report.schema_version > SCHEMA_VERSION:
        raise BackupError(
            f"{backup_path} has schema version {report.schema_version}, newer than this Termtem reads"
            f" ({SCHEMA_VERSION}): restore it with the release that made it"
        )
    kept: Path | None = None
    if target.exists():
        if _in_use(target):
            raise BackupError(f"the store {target} is in use (is a server running on it?): stop it first")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = target.with_name(f"{target.name}.before-restore-{stamp}")
        os.replace(target, kept)
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    private_dir(target.parent)
    partial = target.with_name(target.name + ".restoring")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    source = _read_only(backup_path)
    copy = sqlite3.connect(partial)
    try:
        source.backup(copy, pages=-1)
    finally:
        copy.close()
        source.close()
    os.replace(partial, target)
    return describe(target), kept
