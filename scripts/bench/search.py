"""Search benchmark: a store with Synthea + the Thai synthetic population, a query mix, a SQL baseline.

    # build (or reuse) a store of ~100k generated resources plus the shared Synthea bundles, then measure
    python scripts/bench/search.py --resources 100000 --store-path /tmp/search-100k.sqlite
    # the 1M run: the store is built once and reused by later runs with the same path
    python scripts/bench/search.py --resources 1000000 --store-path /data/search-1m.sqlite

The generated data comes from ``fhir_server.synthetic``. ``--loader direct`` (default) writes it through
the store's own write path (index extraction + atomic store writes, no validation: the point is a big
store quickly); ``--loader loading`` writes NDJSON next to the store and loads it with
``fhir_server.loading`` in-process (the full bundle write path, validation included).

Reports p50/p99 per search kind at each client count through the store (parse + SQL + page building),
the same lookups as hand-written SQL on the same database at the same client counts, and resources/s
when streaming a large result set page by page. Nothing is asserted (tests never assert timings).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_server.search import registry
from fhir_server.search.extract import extract_index
from fhir_server.search.query import parse_search
from fhir_server.storage.base import StoredResource
from fhir_server.storage.sqlite.store import SqliteStore

SYNTHEA = Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata" / "synthea" / "R4"
STAMP = "2024-01-01T00:00:00.000Z"
LOINC = "http://loinc.org"
DSPM_RESULT = "https://termtem.org/fhir/CodeSystem/th-dspm-result"
OBS_STATUS_VS = "http://hl7.org/fhir/ValueSet/observation-status"


# --- building the store ----------------------------------------------------------------------------


def _synthea() -> Iterator[dict[str, Any]]:
    """Synthea bundle entries with their urn:uuid references rewritten to Type/id."""
    for path in sorted(SYNTHEA.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        text = orjson.dumps([e["resource"] for e in bundle["entry"]]).decode()
        for e in bundle["entry"]:
            r = e["resource"]
            text = text.replace(f'"{e["fullUrl"]}"', f'"{r["resourceType"]}/{r["id"]}"')
        yield from orjson.loads(text)


def _generated(resources: int, seed: int) -> Iterator[dict[str, Any]]:
    from fhir_server.synthetic import generate

    for household in generate(seed, resources=resources):
        yield from household


async def _load_direct(
    store: SqliteStore, resources: Iterator[dict[str, Any]], *, dedupe: bool, batch: int = 1000
) -> int:
    """Write through the store's transaction API (index extraction included, no validation).

    ``dedupe`` skips repeated (type, id) pairs (Synthea repeats its Organizations and Practitioners);
    the generated population never repeats one, so it streams without remembering every id.
    """
    seen: set[tuple[str, str]] = set()
    n, chunk = 0, []
    started = time.perf_counter()

    async def flush() -> None:
        async with store.transaction() as tx:
            for stored, rows in chunk:
                await tx.put(stored, rows)
        chunk.clear()

    for r in resources:
        if dedupe:
            key = (r["resourceType"], r["id"])
            if key in seen:
                continue
            seen.add(key)
        body = orjson.dumps({**r, "meta": {**r.get("meta", {}), "versionId": "1", "lastUpdated": STAMP}})
        chunk.append((StoredResource(r["resourceType"], r["id"], 1, STAMP, "PUT", body), extract_index(r)))
        n += 1
        if len(chunk) >= batch:
            await flush()
            if n % 50_000 < batch:
                rate = n / (time.perf_counter() - started)
                print(f"  {n:,} resources loaded ({rate:,.0f}/s)", flush=True)
    if chunk:
        await flush()
    return n


async def _load_with_loading(url: str, resources: int, seed: int, work_dir: Path) -> None:
    """Generate NDJSON and load it (with Synthea) through ``fhir_server.loading`` in-process."""
    from fhir_server.loading import DEDUPLICATED_TYPES, load_paths
    from fhir_server.loading.runner import StoreTarget
    from fhir_server.synthetic import write_ndjson

    ndjson = work_dir / "generated"
    write_ndjson(ndjson, seed, resources=resources)
    target = StoreTarget(url)
    try:
        summary = await load_paths([SYNTHEA, ndjson], target, dedupe=DEDUPLICATED_TYPES)
    finally:
        await target.close()
    if summary.failures:
        print(f"  {len(summary.failures)} bundles failed to load; first: {summary.failures[0]}")


async def build_store(path: Path, resources: int, seed: int, loader: str, rebuild: bool) -> SqliteStore:
    """Open the store at ``path``, building it first unless a complete build of the same size is there."""
    marker = path.with_name(path.name + ".built.json")
    wanted = {"resources": resources, "seed": seed, "loader": loader, "synthea": True}
    if rebuild or not marker.exists() or orjson.loads(marker.read_bytes()).get("spec") != wanted:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        marker.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        print(f"building {path}: Synthea + {resources:,} generated resources ({loader})", flush=True)
        if loader == "loading":
            with tempfile.TemporaryDirectory(dir=path.parent) as work:
                await _load_with_loading(f"sqlite:///{path}", resources, seed, Path(work))
        else:
            store = SqliteStore(f"sqlite:///{path}")
            await store.open()
            await _load_direct(store, _synthea(), dedupe=True)
            await _load_direct(store, _generated(resources, seed), dedupe=False)
            await store.close()
        conn = sqlite3.connect(path)
        count = conn.execute("SELECT count(*) FROM resource WHERE method != 'DELETE'").fetchone()[0]
        conn.execute("ANALYZE")
        conn.close()
        seconds = time.perf_counter() - started
        marker.write_bytes(orjson.dumps({"spec": wanted, "count": count, "seconds": round(seconds, 1)}))
        print(f"built: {count:,} resources in {seconds:,.0f}s ({count / seconds:,.0f}/s)")
    else:
        print(f"reusing {path}: {orjson.loads(marker.read_bytes())['count']:,} resources")
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    return store


# --- the query mix ---------------------------------------------------------------------------------


def _sample(conn: sqlite3.Connection) -> dict[str, str]:
    """Values for the selective queries, taken from the data (a real patient's CID and family name)."""
    cid_key = registry.get("Patient", "identifier")
    assert cid_key is not None
    row = conn.execute(
        "SELECT t.code FROM sp_token t WHERE t.pkey = ? AND t.sys = 'https://terms.sil-th.org/id/th-cid'"
        " ORDER BY t.rid LIMIT 1 OFFSET 100",
        (cid_key.key,),
    ).fetchone()
    family = registry.get("Patient", "family")
    assert family is not None
    fam = conn.execute(
        "SELECT s.norm FROM sp_string s WHERE s.pkey = ? ORDER BY s.rid DESC LIMIT 1", (family.key,)
    ).fetchone()
    return {"cid": row[0] if row else "0000000000000", "family": fam[0] if fam else "smith"}


def mix(sample: dict[str, str]) -> list[tuple[str, str, str]]:
    cid, family = sample["cid"], sample["family"]
    prefix = family[: max(2, len(family) // 2)]
    return [
        ("token", "Observation", f"code={LOINC}|29463-7&_count=20"),
        ("token :in", "Observation", f"status:in={OBS_STATUS_VS}&_count=20"),
        ("date range", "Observation", "date=ge2020-01-01&date=lt2021-01-01&_count=20"),
        ("string prefix", "Patient", f"name={prefix}&_count=20"),
        ("identifier", "Patient", f"identifier=https://terms.sil-th.org/id/th-cid|{cid}"),
        ("chained", "Observation", f"subject:Patient.family={family}&_count=20"),
        ("_has", "Patient", f"_has:Observation:patient:value-concept={DSPM_RESULT}|suspected-delay"),
        ("_include", "Observation", f"code={LOINC}|29463-7&_include=Observation:patient&_count=20"),
        ("_revinclude", "Patient", "gender=female&_revinclude=Observation:patient&_count=20"),
        ("_sort narrow", "Patient", "gender=male&_sort=-birthdate&_count=20"),
        ("_sort broad", "Observation", f"code={LOINC}|29463-7&_sort=-date&_count=20"),
        ("_summary=count", "Observation", f"code={LOINC}|29463-7&_summary=count"),
        ("_total=estimate", "Observation", f"code={LOINC}|29463-7&_total=estimate&_count=20"),
        ("_total=accurate", "Observation", f"code={LOINC}|29463-7&_total=accurate&_count=20"),
    ]


def baseline(sample: dict[str, str]) -> dict[str, tuple[str, list[Any]]]:
    """Hand-written SQL for the same lookups (what a human would write against these tables)."""

    def key(t: str, c: str) -> int:
        p = registry.get(t, c)
        assert p is not None
        return p.key

    code, date = key("Observation", "code"), key("Observation", "date")
    subject = key("Observation", "subject")
    family, ident = key("Patient", "family"), key("Patient", "identifier")
    gender, birth = key("Patient", "gender"), key("Patient", "birthdate")
    name = key("Patient", "name")
    prefix = sample["family"][: max(2, len(sample["family"]) // 2)]
    return {
        "token": (
            "SELECT r.body FROM sp_token t JOIN resource r ON r.rid = t.rid WHERE t.pkey = ?"
            " AND t.code = '29463-7' AND t.sys = ? ORDER BY t.rid LIMIT 21",
            [code, LOINC],
        ),
        "date range": (
            "SELECT r.body FROM sp_date d JOIN resource r ON r.rid = d.rid WHERE d.pkey = ?"
            " AND d.lo >= ? AND d.hi < ? ORDER BY d.rid LIMIT 21",
            [date, 1577836800000, 1609459200000],
        ),
        "string prefix": (
            "SELECT DISTINCT r.rid, r.body FROM sp_string s JOIN resource r ON r.rid = s.rid WHERE s.pkey = ?"
            " AND s.norm >= ? AND s.norm < ? ORDER BY r.rid LIMIT 21",
            [name, prefix, prefix + "\U0010ffff"],
        ),
        "identifier": (
            "SELECT r.body FROM sp_token t JOIN resource r ON r.rid = t.rid WHERE t.pkey = ? AND t.code = ?"
            " AND t.sys = 'https://terms.sil-th.org/id/th-cid' LIMIT 2",
            [ident, sample["cid"]],
        ),
        "chained": (
            "SELECT r.body FROM sp_ref x JOIN resource r ON r.rid = x.rid"
            " WHERE x.pkey = ? AND x.ttype = 'Patient'"
            " AND x.tid IN (SELECT p.id FROM sp_string s JOIN resource p ON p.rid = s.rid"
            " WHERE s.pkey = ? AND s.norm >= ? AND s.norm < ?) ORDER BY x.rid LIMIT 21",
            [subject, family, sample["family"], sample["family"] + "\U0010ffff"],
        ),
        "_sort narrow": (
            "SELECT r.body FROM sp_token g JOIN resource r ON r.rid = g.rid"
            " LEFT JOIN sp_date b ON b.rid = g.rid AND b.pkey = ?"
            " WHERE g.pkey = ? AND g.code = 'male' ORDER BY b.hi DESC, g.rid LIMIT 21",
            [birth, gender],
        ),
        "_sort broad": (
            "SELECT r.body FROM sp_token t JOIN resource r ON r.rid = t.rid"
            " LEFT JOIN sp_date d ON d.rid = t.rid AND d.pkey = ?"
            " WHERE t.pkey = ? AND t.code = '29463-7' AND t.sys = ? ORDER BY d.hi DESC, t.rid LIMIT 21",
            [date, code, LOINC],
        ),
        "_summary=count": (
            "SELECT count(*) FROM sp_token t WHERE t.pkey = ? AND t.code = '29463-7' AND t.sys = ?",
            [code, LOINC],
        ),
    }


async def _timed(store: SqliteStore, rtype: str, q: str) -> float:
    t0 = time.perf_counter()
    query = parse_search(
        rtype, parse_qsl(q), base_url="http://bench/fhir", strict=True, default_count=20, max_count=1000
    )
    page = await store.search(query)
    for s in [*page.matches, *page.included]:
        orjson.loads(s.body)
    return time.perf_counter() - t0


async def _deep_cursor(store: SqliteStore, rtype: str, q: str, pages: int) -> str | None:
    cursor = None
    for _ in range(pages):
        params = parse_qsl(q) + ([("_cursor", cursor)] if cursor else [])
        page = await store.search(
            parse_search(rtype, params, base_url="http://b", strict=True, default_count=20, max_count=1000)
        )
        cursor = page.next_cursor
        if cursor is None:
            return None
    return cursor


async def _run_mix(
    store: SqliteStore, queries: list[tuple[str, str, str]], clients: int, rounds: int
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {k: [] for k, _, _ in queries}

    async def client() -> None:
        for _ in range(rounds):
            for kind, rtype, q in queries:
                results[kind].append(await _timed(store, rtype, q))

    await asyncio.gather(*(client() for _ in range(clients)))
    return results


def _run_baseline(
    path: Path, sqls: dict[str, tuple[str, list[Any]]], clients: int, rounds: int
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {k: [] for k in sqls}
    lock = threading.Lock()

    def client() -> None:
        conn = sqlite3.connect(path, check_same_thread=False)
        mine: dict[str, list[float]] = {k: [] for k in sqls}
        for _ in range(rounds):
            for kind, (sql, args) in sqls.items():
                t0 = time.perf_counter()
                for row in conn.execute(sql, args).fetchall():
                    if isinstance(row[-1], bytes):
                        orjson.loads(row[-1])
                mine[kind].append(time.perf_counter() - t0)
        conn.close()
        with lock:
            for k, v in mine.items():
                results[k].extend(v)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


async def _stream(store: SqliteStore) -> tuple[int, float]:
    n, t0, cursor = 0, time.perf_counter(), None
    while True:
        p = [("_count", "1000")] + ([("_cursor", cursor)] if cursor else [])
        page = await store.search(
            parse_search(
                "Observation", p, base_url="http://b", strict=True, default_count=1000, max_count=1000
            )
        )
        for s in page.matches:
            orjson.loads(s.body)
        n += len(page.matches)
        cursor = page.next_cursor
        if not cursor:
            return n, time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store-path", "--db", dest="store_path", type=Path,
                    default=Path(tempfile.gettempdir()) / "termtem-bench-search.sqlite")
    ap.add_argument("--resources", type=int, default=100_000, help="generated resources (Synthea is added)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--loader", choices=("direct", "loading"), default="direct")
    ap.add_argument("--rebuild", action="store_true", help="rebuild even if a matching store exists")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--deep-page", type=int, default=50, help="page number timed as the deep page")
    ap.add_argument("--no-stream", action="store_true", help="skip streaming every Observation")
    args = ap.parse_args()

    store = await build_store(args.store_path, args.resources, args.seed, args.loader, args.rebuild)
    conn = sqlite3.connect(args.store_path)
    sample = _sample(conn)
    conn.close()
    queries = mix(sample)
    deep_q = f"code={LOINC}|29463-7&_sort=-date&_count=20"
    cursor = await _deep_cursor(store, "Observation", deep_q, args.deep_page)
    if cursor:
        queries.append(("deep page", "Observation", f"{deep_q}&_cursor={cursor}"))
    sqls = baseline(sample)

    for clients in args.clients:
        results = await _run_mix(store, queries, clients, args.rounds)
        base = _run_baseline(args.store_path, sqls, clients, args.rounds)
        print(f"\n{clients} client(s), ms: kind, store p50, p99 | hand-written SQL p50, p99")
        for kind, values in results.items():
            line = f"  {kind:16s} {_pct(values, 0.5):8.2f} {_pct(values, 0.99):8.2f}"
            if kind in base:
                line += f" | {_pct(base[kind], 0.5):8.2f} {_pct(base[kind], 0.99):8.2f}"
            print(line)
    if not args.no_stream:
        n, seconds = await _stream(store)
        print(f"\nstreaming all Observations page by page (_count=1000): {n:,} in {seconds:.1f}s"
              f" = {n / seconds:,.0f}/s")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
