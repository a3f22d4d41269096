"""Search benchmark: load Synthea (+ generated patients) into a SQLite store, then time a query mix.

    python scripts/bench/search.py --db /tmp/bench.sqlite --generated 20000 --clients 1 8

Reports extract_index throughput while loading, p50/p99 per search kind at each client count through
the store (parse + SQL + page building), the same lookups as hand-written SQL on the same database as
a baseline, and resources/s streaming a large result page by page. Timings go to stdout; nothing is
asserted (tests never assert timings).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson

from fhir_server.search.extract import extract_index
from fhir_server.search.query import parse_search
from fhir_server.storage.base import StoredResource
from fhir_server.storage.sqlite.store import SqliteStore

SYNTHEA = Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata" / "synthea" / "R4"
STAMP = "2024-01-01T00:00:00.000Z"


def _synthea() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(SYNTHEA.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        text = orjson.dumps([e["resource"] for e in bundle["entry"]]).decode()
        for e in bundle["entry"]:
            r = e["resource"]
            text = text.replace(f'"{e["fullUrl"]}"', f'"{r["resourceType"]}/{r["id"]}"')
        out.extend(orjson.loads(text))
    return out


def _generated(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    families = ["Somsak", "Suda", "Malee", "Niran", "Chai", "Ploy", "Kanya", "Arthit", "Smith", "Müller"]
    out: list[dict[str, Any]] = []
    for i in range(n):
        pid = f"gen-{i}"
        out.append(
            {
                "resourceType": "Patient",
                "id": pid,
                "gender": rnd.choice(["male", "female"]),
                "birthDate": f"{rnd.randint(2005, 2024)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}",
                "name": [{"family": rnd.choice(families) + str(i % 97), "given": ["Gen"]}],
                "identifier": [{"system": "https://terms.sil-th.org/id/th-cid", "value": f"{i:013d}"}],
            }
        )
        for j in range(4):
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"{pid}-w{j}",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "effectiveDateTime": f"{rnd.randint(2010, 2024)}-{rnd.randint(1, 12):02d}-01",
                    "valueQuantity": {
                        "value": round(rnd.uniform(3, 60), 1),
                        "unit": "kg",
                        "system": "http://unitsofmeasure.org",
                        "code": "kg",
                    },
                }
            )
    return out


async def _load(store: SqliteStore, resources: list[dict[str, Any]], batch: int = 500) -> tuple[float, float]:
    extract_time = 0.0
    start = time.perf_counter()
    for i in range(0, len(resources), batch):
        chunk = resources[i : i + batch]
        prepared = []
        t0 = time.perf_counter()
        for r in chunk:
            body = orjson.dumps({**r, "meta": {"versionId": "1", "lastUpdated": STAMP}})
            prepared.append(
                (StoredResource(r["resourceType"], r["id"], 1, STAMP, "PUT", body), extract_index(r))
            )
        extract_time += time.perf_counter() - t0
        async with store.transaction() as tx:
            for stored, rows in prepared:
                await tx.put(stored, rows)
    return extract_time, time.perf_counter() - start


MIX: list[tuple[str, str, str]] = [
    # kind, type, query; baseline SQL below uses the same database
    ("token", "Observation", "code=http://loinc.org|29463-7&_count=20"),
    ("date range", "Observation", "date=ge2015-01-01&date=lt2016-01-01&_count=20"),
    ("string prefix", "Patient", "name=somsa&_count=20"),
    ("chained", "Observation", "subject:Patient.name=malee1&_count=20"),
    ("_has", "Patient", "_has:Observation:patient:value-quantity=gt59&_count=20"),
    ("_include", "Observation", "code=29463-7&_include=Observation:patient&_count=20"),
    ("_revinclude", "Patient", "gender=female&_revinclude=Observation:patient&_count=20"),
    ("_sort", "Patient", "gender=male&_sort=-birthdate&_count=20"),
    ("_summary=count", "Observation", "code=29463-7&_summary=count"),
    ("identifier", "Patient", "identifier=https://terms.sil-th.org/id/th-cid|0000000000042"),
]

BASELINE: dict[str, str] = {
    "token": "SELECT r.body FROM sp_token t JOIN resource r ON r.rid=t.rid"
    " WHERE t.pkey=? AND t.code='29463-7'"
    " AND t.sys='http://loinc.org' ORDER BY r.rid LIMIT 21",
    "string prefix": "SELECT r.body FROM sp_string s JOIN resource r ON r.rid=s.rid WHERE s.pkey=?"
    " AND s.norm >= 'somsa' AND s.norm < 'somsb' LIMIT 21",
    "_summary=count": "SELECT count(*) FROM sp_token t WHERE t.pkey=? AND t.code='29463-7'",
}


async def _timed(store: SqliteStore, rtype: str, q: str) -> float:
    from urllib.parse import parse_qsl

    t0 = time.perf_counter()
    query = parse_search(
        rtype, parse_qsl(q), base_url="http://bench/fhir", strict=True, default_count=20, max_count=1000
    )
    page = await store.search(query)
    for s in [*page.matches, *page.included]:
        orjson.loads(s.body)
    return time.perf_counter() - t0


async def _run_mix(store: SqliteStore, clients: int, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {k: [] for k, _, _ in MIX}

    async def client() -> None:
        for _ in range(rounds):
            for kind, rtype, q in MIX:
                results[kind].append(await _timed(store, rtype, q))

    await asyncio.gather(*(client() for _ in range(clients)))
    return results


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


async def _stream(store: SqliteStore) -> tuple[int, float]:
    from urllib.parse import parse_qsl

    params = parse_qsl("_count=1000")
    n, t0, cursor = 0, time.perf_counter(), None
    while True:
        p = params + ([("_cursor", cursor)] if cursor else [])
        page = await store.search(
            parse_search(
                "Observation", p, base_url="http://b", strict=True, default_count=1000, max_count=1000
            )
        )
        n += len(page.matches)
        cursor = page.next_cursor
        if not cursor:
            return n, time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="/tmp/termtem-bench-search.sqlite")
    ap.add_argument(
        "--generated", type=int, default=5000, help="generated patients (each with 4 observations)"
    )
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--reuse", action="store_true", help="use an already loaded database")
    args = ap.parse_args()
    if not args.reuse:
        Path(args.db).unlink(missing_ok=True)
    store = SqliteStore(f"sqlite:///{args.db}")
    await store.open()
    if not args.reuse:
        unique = {(r["resourceType"], r["id"]): r for r in _synthea() + _generated(args.generated)}
        resources = list(unique.values())
        extract_time, total = await _load(store, resources)
        print(
            f"loaded {len(resources)} resources in {total:.1f}s; extract_index "
            f"{len(resources) / extract_time:,.0f} resources/s on one core"
        )
    for clients in args.clients:
        results = await _run_mix(store, clients, args.rounds)
        print(f"\n{clients} client(s): kind, p50 ms, p99 ms")
        for kind, values in results.items():
            print(f"  {kind:16s} {_pct(values, 0.5):8.2f} {_pct(values, 0.99):8.2f}")
    from fhir_server.search import registry

    conn = sqlite3.connect(args.db)
    keys = {
        "token": registry.get("Observation", "code").key,
        "string prefix": registry.get("Patient", "name").key,
        "_summary=count": registry.get("Observation", "code").key,
    }
    print("\nbaseline hand-written SQL: kind, p50 ms, p99 ms")
    for kind, sql in BASELINE.items():
        times = []
        for _ in range(args.rounds * 5):
            t0 = time.perf_counter()
            for row in conn.execute(sql, (keys[kind],)).fetchall():
                if isinstance(row[0], bytes):
                    orjson.loads(row[0])
            times.append(time.perf_counter() - t0)
        print(f"  {kind:16s} {_pct(times, 0.5):8.2f} {_pct(times, 0.99):8.2f}")
    n, seconds = await _stream(store)
    print(
        f"\nstreaming all Observations page by page (_count=1000): {n} in {seconds:.1f}s"
        f" = {n / seconds:,.0f}/s"
    )
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
