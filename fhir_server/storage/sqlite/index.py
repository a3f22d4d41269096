"""SQLite search-index tables: one table per value type, rows keyed by resource ``rid``.

Each table has a lookup index that starts with the parameter key (so a search reads one narrow
range) and ends with ``rid`` (so the index covers the lookup), and a covering index on
``(rid, pkey, value...)`` for replacing a resource's rows, ``:missing``, ``_include`` and reading
sort keys without touching the table. Rows exist only for the current version of live resources
(deleting a resource deletes its rows), so a search answered from these tables alone never needs
the resource row to know a match is live; the SQL compiler relies on that.
"""

from __future__ import annotations

import sqlite3

from fhir_server.search.model import IndexRows

TABLES = ("sp_string", "sp_token", "sp_ref", "sp_date", "sp_number", "sp_quantity", "sp_uri")

SCHEMA: list[str] = [
    "CREATE TABLE IF NOT EXISTS sp_string(rid INTEGER NOT NULL, pkey INTEGER NOT NULL, norm TEXT NOT NULL,"
    " exact TEXT NOT NULL, grp INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sp_string_v ON sp_string(pkey, norm, rid)",
    "DROP INDEX IF EXISTS sp_string_r",
    "CREATE INDEX IF NOT EXISTS sp_string_rk ON sp_string(rid, pkey, norm)",
    "CREATE TABLE IF NOT EXISTS sp_token(rid INTEGER NOT NULL, pkey INTEGER NOT NULL, sys TEXT, code TEXT,"
    " grp INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sp_token_v ON sp_token(pkey, code, sys, rid)",
    "CREATE INDEX IF NOT EXISTS sp_token_s ON sp_token(pkey, sys, rid)",
    "DROP INDEX IF EXISTS sp_token_r",
    "CREATE INDEX IF NOT EXISTS sp_token_rk ON sp_token(rid, pkey, code)",
    "CREATE TABLE IF NOT EXISTS sp_ref(rid INTEGER NOT NULL, pkey INTEGER NOT NULL, ttype TEXT, tid TEXT,"
    " ver TEXT, url TEXT, grp INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sp_ref_v ON sp_ref(pkey, tid, ttype, rid)",
    "CREATE INDEX IF NOT EXISTS sp_ref_u ON sp_ref(pkey, url, rid)",
    "CREATE INDEX IF NOT EXISTS sp_ref_t ON sp_ref(tid, ttype, pkey, rid)",
    "DROP INDEX IF EXISTS sp_ref_r",
    "CREATE INDEX IF NOT EXISTS sp_ref_rk ON sp_ref(rid, pkey, ttype, tid)",
    "CREATE TABLE IF NOT EXISTS sp_date(rid INTEGER NOT NULL, pkey INTEGER NOT NULL, lo INTEGER NOT NULL,"
    " hi INTEGER NOT NULL, grp INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sp_date_v ON sp_date(pkey, lo, hi, rid)",
    "CREATE INDEX IF NOT EXISTS sp_date_h ON sp_date(pkey, hi, lo, rid)",
    "DROP INDEX IF EXISTS sp_date_r",
    "CREATE INDEX IF NOT EXISTS sp_date_rk ON sp_date(rid, pkey, lo, hi)",
    "CREATE TABLE IF NOT EXISTS sp_number(rid INTEGER NOT NULL, pkey INTEGER NOT NULL, lo REAL NOT NULL,"
    " hi REAL NOT NULL, grp INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sp_number_v ON sp_number(pkey, lo, hi, rid)",
    "DROP INDEX IF EXISTS sp_number_r",
    "CREATE INDEX IF NOT EXISTS sp_number_rk ON sp_number(rid, pkey, lo, hi)",
    "CREATE TABLE IF NOT EXISTS sp_quantity(rid INTEGER NOT NULL, pkey INTEGER NOT NULL, sys TEXT, code TEXT,"
    " lo REAL NOT NULL, hi REAL NOT NULL, ccode TEXT, clo REAL, chi REAL, grp INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sp_quantity_v ON sp_quantity(pkey, lo, hi, rid)",
    "CREATE INDEX IF NOT EXISTS sp_quantity_c ON sp_quantity(pkey, ccode, clo, chi, rid)",
    "DROP INDEX IF EXISTS sp_quantity_r",
    "CREATE INDEX IF NOT EXISTS sp_quantity_rk ON sp_quantity(rid, pkey, lo, hi, clo, chi)",
    "CREATE TABLE IF NOT EXISTS sp_uri(rid INTEGER NOT NULL, pkey INTEGER NOT NULL, uri TEXT NOT NULL,"
    " grp INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sp_uri_v ON sp_uri(pkey, uri, rid)",
    "DROP INDEX IF EXISTS sp_uri_r",
    "CREATE INDEX IF NOT EXISTS sp_uri_rk ON sp_uri(rid, pkey, uri)",
    # Paging over a whole type in insertion or _lastUpdated order without a sort step.
    "CREATE INDEX IF NOT EXISTS resource_type_rid ON resource(type, rid)",
    "CREATE INDEX IF NOT EXISTS resource_type_updated ON resource(type, last_updated, rid)",
    # Counting, estimating and filtering live resources of a type from the index alone.
    "CREATE INDEX IF NOT EXISTS resource_live ON resource(type, rid) WHERE method != 'DELETE'",
]

_INSERTS = {
    "string": "INSERT INTO sp_string(rid, pkey, norm, exact, grp) VALUES (?,?,?,?,?)",
    "token": "INSERT INTO sp_token(rid, pkey, sys, code, grp) VALUES (?,?,?,?,?)",
    "reference": "INSERT INTO sp_ref(rid, pkey, ttype, tid, ver, url, grp) VALUES (?,?,?,?,?,?,?)",
    "date": "INSERT INTO sp_date(rid, pkey, lo, hi, grp) VALUES (?,?,?,?,?)",
    "number": "INSERT INTO sp_number(rid, pkey, lo, hi, grp) VALUES (?,?,?,?,?)",
    "quantity": "INSERT INTO sp_quantity(rid, pkey, sys, code, lo, hi, ccode, clo, chi, grp)"
    " VALUES (?,?,?,?,?,?,?,?,?,?)",
    "uri": "INSERT INTO sp_uri(rid, pkey, uri, grp) VALUES (?,?,?,?)",
}


def delete_index(conn: sqlite3.Connection, rid: int) -> None:
    """Remove every index row of a resource (on delete, or before writing new rows)."""
    for table in TABLES:
        conn.execute(f"DELETE FROM {table} WHERE rid = ?", (rid,))


def write_index(conn: sqlite3.Connection, rid: int, resource_type: str, rows: IndexRows) -> None:
    """Replace a resource's index rows with ``rows`` (call inside the write transaction)."""
    delete_index(conn, rid)
    for name, sql in _INSERTS.items():
        values = getattr(rows, name)
        if values:
            conn.executemany(sql, [(rid, *row) for row in values])


def insert_new(conn: sqlite3.Connection, rows: list[tuple[int, IndexRows]]) -> None:
    """Index rows of resources just inserted under new ``rid``s (nothing to replace): one
    ``executemany`` per table for all of them (a group commit of AuditEvents)."""
    for name, sql in _INSERTS.items():
        values = [(rid, *row) for rid, index in rows for row in getattr(index, name)]
        if values:
            conn.executemany(sql, values)
