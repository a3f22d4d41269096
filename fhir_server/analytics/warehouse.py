"""The analytics warehouse: the shipped views materialised in DuckDB and kept up to date incrementally.

Measures run on these tables, never on the FHIR store. ``build`` fills them from the store once;
``refresh`` then follows the store's change feed from the last change number it applied and replaces
the rows of exactly the resources that changed (a view's rows depend on their own resource only, so
this is exact). The derived ``growth_z`` table (one row per growth visit of a child under five, with
WHO z-scores) is recomputed for the children whose measurements or details changed.

The warehouse holds every agency's data and is for the server itself: callers reach it only through
aggregates (``fhir_server.analytics.measures``), suppressed for roles that see aggregates only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from fhir_server.analytics.growth import who_zscores
from fhir_server.analytics.views.definition import View
from fhir_server.analytics.views.library import shipped_view, shipped_views
from fhir_server.analytics.views.run import body_batches

log = logging.getLogger("termtem.analytics")

# The change feed is re-read this many numbers back each time: a transaction that took its number
# before a later one but committed after it (possible on MongoDB) is still seen.
_MARGIN = 200
_BATCH = 2000
_DATE_TYPES = frozenset({"date", "dateTime", "instant"})
_WEIGHT, _HEIGHTS = "29463-7", ("8302-2", "8306-3")
GROWTH_Z_COLUMNS = ["patient_id", "date", "age_days", "weight", "height", "z_wfa", "z_lhfa", "z_wflh", "_id"]


def _day(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 4:
        return None
    text = value[:10]
    try:
        if len(text) == 4:
            return date(int(text), 1, 1)
        if len(text) == 7:
            return date(int(text[:4]), int(text[5:7]), 1)
        return date.fromisoformat(text)
    except ValueError:
        return None


def _arrow_type(view: View, name: str) -> pa.DataType:
    fhir_type = view.types.get(name)
    if fhir_type in _DATE_TYPES:
        return pa.date32()
    if fhir_type in ("integer", "positiveInt", "unsignedInt"):
        return pa.int64()
    if fhir_type == "decimal":
        return pa.float64()
    if fhir_type == "boolean":
        return pa.bool_()
    return pa.string()


def _table(view: View, rows: list[tuple[Any, ...]]) -> pa.Table:
    names = [*view.columns, "_id"]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for name, values in zip(names, columns, strict=True):
        kind = pa.string() if name == "_id" else _arrow_type(view, name)
        data = list(values)
        if kind == pa.date32():
            data = [_day(v) for v in data]
        elif kind == pa.float64():
            data = [None if v is None else float(v) for v in data]
        elif kind == pa.string():
            data = [v if v is None or isinstance(v, str) else str(v) for v in data]
        arrays.append(pa.array(data, type=kind))
    return pa.Table.from_arrays(arrays, names=names)


def warehouse_views() -> list[View]:
    """The shipped views the warehouse holds (not the derived ones: growth z-scores are ``growth_z``)."""
    return [view for view in (shipped_view(v["id"]) for v in shipped_views()) if view.derivation is None]


class Warehouse:
    """DuckDB tables named after the shipped views (plus ``growth_z``), and their watermark."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._db = duckdb.connect(str(path) if path else ":memory:")
        self._db.execute("SET enable_external_access = false")
        self._lock = threading.Lock()
        self.views = warehouse_views()
        self.by_type: dict[str, list[View]] = {}
        for view in self.views:
            self.by_type.setdefault(view.resource_type, []).append(view)
        self.generation = 0
        self.watermark = 0  # the store's change number the tables are up to date with
        self.built = False
        self.last_refresh_seconds = 0.0
        self._applied: dict[tuple[str, str], int] = {}  # versions applied inside the re-read margin

    # -- DuckDB access (one thread at a time) -------------------------------------------------------
    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params or []).fetchall()

    def columns(self) -> dict[str, list[str]]:
        out = {view.name or "": [*view.columns] for view in self.views}
        out["growth_z"] = [c for c in GROWTH_Z_COLUMNS if c != "_id"]
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- building ---------------------------------------------------------------------------------
    async def build(self, store: Any) -> None:
        """Fill every table from the store (the start of a new warehouse)."""
        started = time.perf_counter()
        watermark = await store.last_change()
        rows: dict[str, list[tuple[Any, ...]]] = {view.name or "": [] for view in self.views}
        for rtype, views in self.by_type.items():
            async for batch in body_batches(store, rtype):
                await asyncio.to_thread(_rows_into, views, batch, rows)
        await asyncio.to_thread(self._replace_all, rows, watermark)
        self.last_refresh_seconds = time.perf_counter() - started
        log.info("analytics warehouse built in %.1f s", self.last_refresh_seconds)

    def _replace_all(self, rows: dict[str, list[tuple[Any, ...]]], watermark: int) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            for view in self.views:
                name = view.name or ""
                self._db.register("incoming", _table(view, rows[name]))
                self._db.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM incoming")
                self._db.unregister("incoming")
            self._db.execute(f"CREATE OR REPLACE TABLE growth_z AS SELECT * FROM ({_empty_growth_z()})")
            self._recompute_growth_z(None)
            self.watermark = watermark
            self._db.execute("COMMIT")
            self.generation += 1
            self.built = True

    # -- incremental refresh ----------------------------------------------------------------------
    async def changes(self, store: Any) -> tuple[dict[tuple[str, str], tuple[int, bytes]], int]:
        """The newest version and body (empty when deleted) of every warehouse-type resource changed
        after the watermark and not applied yet, and the new watermark."""
        found: dict[tuple[str, str], tuple[int, bytes]] = {}
        after = max(0, self.watermark - _MARGIN)
        newest = self.watermark
        while True:
            batch = await store.changes(after, 1000)
            for number, entry in batch:
                after = newest = max(newest, number)
                key = (entry.resource_type, entry.id)
                if entry.resource_type in self.by_type and self._applied.get(key, 0) < entry.version:
                    found[key] = (entry.version, entry.body)
            if len(batch) < 1000:
                return found, newest

    async def refresh(self, store: Any) -> bool:
        """Bring the tables up to date; True when anything changed."""
        if not self.built:
            await self.build(store)
            return True
        started = time.perf_counter()
        changed, watermark = await self.changes(store)
        if not changed:
            self.watermark = watermark
            return False
        rows: dict[str, list[tuple[Any, ...]]] = {view.name or "": [] for view in self.views}
        for rtype, views in self.by_type.items():
            bodies = [body for (t, _), (_, body) in changed.items() if t == rtype and body]
            await asyncio.to_thread(_rows_into, views, bodies, rows)
        await asyncio.to_thread(self._apply, changed, rows, watermark)
        if len(self._applied) > 50_000:
            self._applied.clear()
        self._applied.update({k: v for k, (v, _) in changed.items()})
        self.last_refresh_seconds = time.perf_counter() - started
        return True

    def _apply(
        self,
        changed: dict[tuple[str, str], tuple[int, bytes]],
        rows: dict[str, list[tuple[Any, ...]]],
        watermark: str,
    ) -> None:
        touched_patients: set[str] = set()
        with self._lock:
            self._db.execute("BEGIN")
            for view in self.views:
                name = view.name or ""
                ids = [rid for (t, rid) in changed if t == view.resource_type]
                if not ids:
                    continue
                if "patient_id" in view.columns:
                    touched_patients.update(
                        r[0]
                        for r in self._db.execute(
                            f"SELECT DISTINCT patient_id FROM {name} WHERE _id IN (SELECT unnest(?))", [ids]
                        ).fetchall()
                        if r[0]
                    )
                    position = view.columns.index("patient_id")
                    touched_patients.update(r[position] for r in rows[name] if r[position])
                self._db.execute(f"DELETE FROM {name} WHERE _id IN (SELECT unnest(?))", [ids])
                if rows[name]:
                    self._db.register("incoming", _table(view, rows[name]))
                    self._db.execute(f"INSERT INTO {name} SELECT * FROM incoming")
                    self._db.unregister("incoming")
            if touched_patients:
                self._recompute_growth_z(sorted(touched_patients))
            self.watermark = watermark
            self._db.execute("COMMIT")
            self.generation += 1

    # -- growth z-scores --------------------------------------------------------------------------
    def _recompute_growth_z(self, patients: list[str] | None) -> None:
        """Rebuild the visits of ``patients`` (all when None); caller holds the lock."""
        heights = ", ".join(f"'{c}'" for c in _HEIGHTS)
        where = "" if patients is None else "AND w.patient_id IN (SELECT unnest($patients))"
        sql = f"""
            SELECT w._id, w.patient_id, w.date, w.value, h.value, h.loinc, c.sex, c.birth_date
            FROM growth w
            JOIN children c ON c.patient_id = w.patient_id
            LEFT JOIN (SELECT patient_id, date, any_value(value) AS value, any_value(loinc) AS loinc
                       FROM growth WHERE loinc IN ({heights}) GROUP BY patient_id, date) h
              ON h.patient_id = w.patient_id AND h.date = w.date
            WHERE w.loinc = '{_WEIGHT}' AND w.date IS NOT NULL AND c.birth_date IS NOT NULL
              AND w.date - c.birth_date BETWEEN 0 AND 1856 {where}
        """
        params = {"patients": patients} if patients is not None else {}
        visits = self._db.execute(sql, params).fetchall()
        out = []
        for rid, patient, on, weight, height, loinc, sex, born in visits:
            z = who_zscores(sex, born, on, weight, height, None if loinc is None else loinc == "8306-3")
            if z is None:
                continue
            out.append((patient, on, (on - born).days, weight, height, z.wfa, z.lhfa, z.wflh, rid))
        if patients is not None:
            self._db.execute("DELETE FROM growth_z WHERE patient_id IN (SELECT unnest(?))", [patients])
        if out:
            types = [pa.string(), pa.date32(), pa.int64(), *[pa.float64()] * 5, pa.string()]
            arrays = [
                pa.array(list(col), type=t) for col, t in zip(zip(*out, strict=True), types, strict=True)
            ]
            self._db.register("incoming", pa.Table.from_arrays(arrays, names=GROWTH_Z_COLUMNS))
            self._db.execute("INSERT INTO growth_z SELECT * FROM incoming")
            self._db.unregister("incoming")


def _empty_growth_z() -> str:
    return (
        "SELECT NULL::VARCHAR AS patient_id, NULL::DATE AS date, NULL::BIGINT AS age_days,"
        " NULL::DOUBLE AS weight, NULL::DOUBLE AS height, NULL::DOUBLE AS z_wfa, NULL::DOUBLE AS z_lhfa,"
        " NULL::DOUBLE AS z_wflh, NULL::VARCHAR AS _id WHERE FALSE"
    )


def _rows_into(views: list[View], bodies: Iterable[bytes], rows: dict[str, list[tuple[Any, ...]]]) -> None:
    loads = orjson.loads
    for body in bodies:
        resource = None
        for view in views:
            if not view.may_match(body):
                continue
            if resource is None:
                resource = loads(body)
            key = resource.get("id")
            try:
                made = view.rows(resource)
            except Exception:  # a record a view cannot flatten is left out, and said so
                log.warning("view %s skipped %s/%s", view.name, view.resource_type, key)
                continue
            rows[view.name or ""].extend((*row, key) for row in made)
