"""What a de-identified export knows about its children, kept on disk so its memory stays flat.

Per child (and per agency record of a child) an export needs: which records are one child (the identity
layer's golden record, fixed when the export starts), the child's quasi-identifiers and k-anonymity
level, which Patient records are folded into another record of the same child, and which children its
AuditEvents already named. All of it grows with the store, so it lives in one SQLite file in the export
folder (0600, like the NDJSON files; never listed in the manifest, never downloadable) instead of in
dictionaries: the job's memory is the same for ten thousand children or a million. Each page of
resources asks only for the ids it holds (``for_page``), so worker processes receive a few small
dictionaries with each page rather than the whole map. The file is written once, during the plan, and
read as it is by a resumed export: the same links and decisions.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fhir_server.export import kanon
from fhir_server.export.deid import SUPPRESSED
from fhir_server.storage.files import private_file

FILE = ".children.sqlite"
_BATCH = 5000
# Every Patient a resource can name (references, absolute or versioned): the ids a page needs mapped.
_PATIENT_REFERENCE = re.compile(rb'Patient/([A-Za-z0-9\-.]{1,64})(?=["/])')
_SCHEMA = (
    # the export's Patient records, in storage order, with the elements the quasi-identifiers come from
    "CREATE TABLE IF NOT EXISTS patient (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, birth TEXT,"
    " gender TEXT, district TEXT, province TEXT)",
    # record -> its child's golden record (records of children the identity layer links)
    "CREATE TABLE IF NOT EXISTS same_child (record TEXT PRIMARY KEY, golden TEXT NOT NULL) WITHOUT ROWID",
    # one row per child (its key: Pseudonymiser.key), with its quasi-identifiers and level
    "CREATE TABLE IF NOT EXISTS child (key TEXT PRIMARY KEY, month TEXT, sex TEXT, district TEXT,"
    " province TEXT, level INTEGER) WITHOUT ROWID",
    # Patient records another record of the same child stands for in the export
    "CREATE TABLE IF NOT EXISTS merged (record TEXT PRIMARY KEY) WITHOUT ROWID",
    # children named in the export's AuditEvents so far
    "CREATE TABLE IF NOT EXISTS audited (child TEXT PRIMARY KEY) WITHOUT ROWID",
)


@dataclass
class PageChildren:
    """What one page needs: its records' golden records, its children's non-zero k-anonymity levels,
    and its folded Patient records (small: only the ids the page names)."""

    same_child: dict[str, str] = field(default_factory=dict)
    levels: dict[str, int] = field(default_factory=dict)
    merged: frozenset[str] = frozenset()


def named_patients(page: Iterable[tuple[str, bytes]], rtype: str) -> set[str]:
    """Every Patient id the resources of a page name (and, for Patients, their own ids)."""
    found: set[str] = set()
    for id_, body in page:
        if rtype == "Patient":
            found.add(id_)
        found.update(m.decode() for m in _PATIENT_REFERENCE.findall(body))
    return found


class ChildIndex:
    """The file above; safe to use from the event loop's threads (one connection, one lock)."""

    def __init__(self, folder: Path, *, fresh: bool = False) -> None:
        path = folder / FILE
        if fresh:
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        private_file(path)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=DELETE")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA cache_size=-4096")  # 4 MB: the file is read by key, a page at a time
        self._lock = threading.Lock()
        with self._lock:
            for statement in _SCHEMA:
                self._conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- plan ------------------------------------------------------------------------------------

    def add_patients(self, rows: list[tuple[str, str | None, str | None, str | None, str | None]]) -> None:
        """(id, birth date, gender, district code, province code) of Patients, in storage order."""
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT INTO patient (id, birth, gender, district, province) VALUES (?, ?, ?, ?, ?)", rows
            )
            self._conn.execute("COMMIT")

    def patient_ids(self) -> Iterator[list[str]]:
        """The export's Patient ids in storage order, in batches."""
        after = 0
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT seq, id FROM patient WHERE seq > ? ORDER BY seq LIMIT ?", (after, _BATCH)
                ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield [r[1] for r in rows]

    def add_links(self, pairs: Iterable[tuple[str, str]]) -> None:
        """record -> golden record, for records of linked children."""
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT OR REPLACE INTO same_child VALUES (?, ?)", pairs)
            self._conn.execute("COMMIT")

    def links(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM same_child").fetchone()[0])

    def generalise(
        self,
        k: int,
        quasi_identifiers: Callable[
            [str, str, str | None, str | None, str | None, str | None], kanon.QuasiIdentifiers
        ],
    ) -> tuple[int, int, int]:
        """Decide every child's k-anonymity level (``kanon``, run in SQL over this file).

        A child registered by several agencies counts once: its first record in storage order is its
        Patient in the export and gives its quasi-identifiers; the others are folded (``merged``).
        ``quasi_identifiers(key, id, birth, gender, district, province)`` gives a child's values.
        Returns (suppressed children, generalised children, folded records).
        """
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")
            conn.execute("DELETE FROM child")
            conn.execute("DELETE FROM merged")
            after = 0
            while True:
                rows = conn.execute(
                    "SELECT p.seq, p.id, coalesce(s.golden, p.id), p.birth, p.gender, p.district,"
                    " p.province FROM patient p LEFT JOIN same_child s ON s.record = p.id"
                    " WHERE p.seq > ? ORDER BY p.seq LIMIT ?",
                    (after, _BATCH),
                ).fetchall()
                if not rows:
                    break
                after = rows[-1][0]
                for _, id_, key, birth, gender, district, province in rows:
                    qi = quasi_identifiers(key, id_, birth, gender, district, province)
                    added = conn.execute(
                        "INSERT OR IGNORE INTO child VALUES (?, ?, ?, ?, ?, NULL)", (key, *qi)
                    ).rowcount
                    if not added:
                        conn.execute("INSERT OR IGNORE INTO merged VALUES (?)", (id_,))
            for level, cell in enumerate(kanon.SQL_CELLS):
                conn.execute(
                    f"UPDATE child SET level = ? WHERE level IS NULL AND ({cell}) IN"
                    f" (SELECT {cell} FROM child WHERE level IS NULL GROUP BY {cell} HAVING count(*) >= ?)",
                    (level, k),
                )
            conn.execute("UPDATE child SET level = ? WHERE level IS NULL", (SUPPRESSED,))
            counts = conn.execute(
                "SELECT sum(level = ?), sum(level > 0 AND level < ?) FROM child", (SUPPRESSED, SUPPRESSED)
            ).fetchone()
            merged = conn.execute("SELECT count(*) FROM merged").fetchone()[0]
            conn.execute("COMMIT")
        return int(counts[0] or 0), int(counts[1] or 0), int(merged)

    # --- export ----------------------------------------------------------------------------------

    def for_page(self, ids: set[str]) -> PageChildren:
        """The links, levels and folded records of the Patients ``ids`` (those a page names)."""
        if not ids:
            return PageChildren()
        import orjson

        named = orjson.dumps(sorted(ids)).decode()
        with self._lock:
            same = dict(
                self._conn.execute(
                    "SELECT record, golden FROM same_child WHERE record IN (SELECT value FROM json_each(?))",
                    (named,),
                ).fetchall()
            )
            keys = orjson.dumps(sorted({same.get(i, i) for i in ids})).decode()
            levels = dict(
                self._conn.execute(
                    "SELECT key, level FROM child"
                    " WHERE key IN (SELECT value FROM json_each(?)) AND level > 0",
                    (keys,),
                ).fetchall()
            )
            merged = frozenset(
                r[0]
                for r in self._conn.execute(
                    "SELECT record FROM merged WHERE record IN (SELECT value FROM json_each(?))", (named,)
                )
            )
        return PageChildren(same, levels, merged)

    def level_counts(self) -> tuple[int, int]:
        """(suppressed, generalised) children."""
        with self._lock:
            row = self._conn.execute(
                "SELECT sum(level = ?), sum(level > 0 AND level < ?) FROM child", (SUPPRESSED, SUPPRESSED)
            ).fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    # --- audit -----------------------------------------------------------------------------------

    def unaudited(self, children: set[str]) -> set[str]:
        """Of ``children``, those no AuditEvent of this export has named yet."""
        if not children:
            return set()
        import orjson

        named = orjson.dumps(sorted(children)).decode()
        with self._lock:
            seen = {
                r[0]
                for r in self._conn.execute(
                    "SELECT child FROM audited WHERE child IN (SELECT value FROM json_each(?))", (named,)
                )
            }
        return children - seen

    def audited(self, children: list[str]) -> None:
        """Record that an AuditEvent (now committed) named ``children``."""
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT OR IGNORE INTO audited VALUES (?)", [(c,) for c in children])
            self._conn.execute("COMMIT")
