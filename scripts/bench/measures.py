"""District-intelligence benchmark: warehouse build, every measure for every district for a year, view
throughput to Parquet, and the dashboard's page times.

    # on the shared 1M-resource store (read only; waits for its lock while another helper builds it)
    python scripts/bench/measures.py --store-path /work/bench-1m/store.sqlite
    # on a generated store of N children (built in a temporary folder)
    python scripts/bench/measures.py --children 3000

Goals from issue 18: all measures for all districts for one year under 10 s, views at least 50,000
rows/s to Parquet, dashboard pages under 300 ms. Prints the numbers and writes bench-results/*.json;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fhir_server.analytics.measures.evaluate import evaluate
from fhir_server.analytics.measures.library import shipped_measures
from fhir_server.analytics.service import Analytics, _district_only
from fhir_server.analytics.views import output
from fhir_server.analytics.views.library import shipped_view, shipped_views
from fhir_server.analytics.views.run import body_batches
from fhir_server.analytics.views.scan import scan_table
from fhir_server.config import Settings
from fhir_server.storage.sqlite.store import SqliteStore
from scripts.bench.common import machine, percentile, shared_store_lock, write_results


async def _generated_store(folder: Path, children: int) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.analytics.population import load_population

    path = folder / "store.sqlite"
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    await load_population(store, seed=18, children=children)
    await store.close()
    return str(path)


class _ReadOnlyStore:
    """Just ``iterate`` over an SQLite store opened read-only (``mode=ro&immutable=1``): the shared
    1M store must not be written, and ``SqliteStore.open`` runs its schema statements."""

    def __init__(self, path: str) -> None:
        import sqlite3

        self._conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)

    async def iterate_bodies(self, resource_type: str, size: int = 2000) -> Any:
        """As ``SqliteStore.iterate_bodies`` (the next batch read while this one is worked on)."""
        from fhir_server.storage.sqlite.store import _body_batch

        pending = asyncio.ensure_future(asyncio.to_thread(_body_batch, self._conn, resource_type, 0, size))
        while True:
            last, bodies = await pending
            if not bodies:
                return
            pending = asyncio.ensure_future(
                asyncio.to_thread(_body_batch, self._conn, resource_type, last, size)
            )
            yield bodies

    async def close(self) -> None:
        self._conn.close()


async def _views(store: Any, general: bool = False, processes: int | None = None) -> dict[str, Any]:
    """Each shipped view over the whole store (an operator's run: ``scan.scan_table`` as ``$run`` does
    for an admin, with ``processes`` worker processes), written to Parquet.

    ``general``: rows by the FHIRPath engine path by path in this process (what views did
    before the compiled plan, ``views/plan.py``), for a before/after on the same machine."""
    if processes is None:
        processes = Settings().view_processes
    out: dict[str, Any] = {"processes": processes}
    total_rows, total_seconds, total_cpu = 0, 0.0, 0.0
    for definition in shipped_views():
        view = shipped_view(definition["id"])
        if view.derivation is not None:  # growth_zscores: the growth rows again, then per-visit work
            continue
        started, cpu, workers = time.perf_counter(), time.process_time(), {}
        if general:
            rows: list[tuple[Any, ...]] = []
            async for batch in body_batches(store, view.resource_type):
                for body in batch:
                    if view.may_match(body):
                        rows.extend(view.rows_evaluated(orjson.loads(body)))
            table = output.to_table(view, rows)
        else:
            table = await scan_table(view, body_batches(store, view.resource_type), processes, workers)
        data = output.write(table, "parquet")
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu + sum(workers.values())
        assert pq.read_table(io.BytesIO(data)).num_rows == table.num_rows
        out[definition["id"]] = {
            "rows": table.num_rows,
            "seconds": round(seconds, 3),
            "rows_per_second": round(table.num_rows / seconds) if seconds else None,
            "cpu_seconds": round(cpu, 3),  # this process and its worker processes (from their fork)
            "worker_cpu_seconds": round(sum(workers.values()), 3),
            "parquet_bytes": len(data),
        }
        total_rows += table.num_rows
        total_seconds += seconds
        total_cpu += cpu
    out["all"] = {
        "rows": total_rows,
        "seconds": round(total_seconds, 3),
        "rows_per_second": round(total_rows / total_seconds),
        "cpu_seconds": round(total_cpu, 3),
        "rows_per_cpu_second": round(total_rows / total_cpu) if total_cpu else None,
    }
    return out


def _measures(analytics: Analytics, year: int) -> dict[str, Any]:
    """Every shipped measure, every group, stratified by district, for one calendar year."""
    start, end = date(year, 1, 1), date(year, 12, 31)
    per_measure = {}
    started = time.perf_counter()
    for measure in shipped_measures():
        plan = _district_only(analytics.plan(measure))
        t0 = time.perf_counter()
        evaluate(analytics.warehouse.query, plan, start, end, None, True)
        per_measure[measure["id"]] = round(time.perf_counter() - t0, 3)
    district_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for measure in shipped_measures():
        evaluate(analytics.warehouse.query, analytics.plan(measure), start, end, None, True)
    all_strata_seconds = time.perf_counter() - started
    return {
        "year": year,
        "all_measures_all_districts_seconds": round(district_seconds, 3),
        "per_measure_seconds": per_measure,
        "with_all_four_stratifiers_seconds": round(all_strata_seconds, 3),
    }


async def _pages(store_url: str, folder: Path, analytics_ready_timeout: float) -> dict[str, Any]:
    """Page times through the ASGI app with auth on and a signed-in committee member."""
    from fhir_server.api.app import create_app
    from fhir_server.config import Settings
    from fhir_server.dashboard.sessions import COOKIE, Sessions
    from fhir_server.dashboard.users import UserRegistry
    from fhir_server.storage import create_store

    settings = Settings(store_url=store_url, auth=True, data_dir=folder / "data")
    store = create_store(settings)
    await store.open()
    app = create_app(settings, store=store)
    out: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        registry = UserRegistry(store)
        if await registry.get("bench") is None:
            await registry.add("bench", "bench", "Organization/bench", "committee")
        token, _ = await Sessions(store).open("bench")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="https://bench", cookies={COOKIE: token}
        ) as http:
            started = time.perf_counter()
            from fhir_server.analytics.service import analytics_of

            analytics = analytics_of(app.state)
            await analytics.ready(timeout=analytics_ready_timeout)
            out["figures_ready_seconds"] = round(time.perf_counter() - started, 1)
            out["figures_compute_seconds"] = (
                round(analytics.figures.seconds, 2) if analytics.figures else None
            )
            urls = {
                "overview": "/dashboard?period=12m",
                "overview-indicator": "/dashboard?indicator=nutrition-status:stunting&period=2025",
                "district": "/dashboard/district/1011?period=2025",
                "export": "/dashboard/export.csv?period=2025",
            }
            for name, url in urls.items():
                times = []
                for _ in range(30):
                    t0 = time.perf_counter()
                    reply = await http.get(url)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert reply.status_code == 200, (url, reply.status_code)
                out[name] = {
                    "p50_ms": round(percentile(times, 50), 1),
                    "p99_ms": round(percentile(times, 99), 1),
                }
            # a write, then the incremental refresh that follows it
            t0 = time.perf_counter()
            changed = await analytics.refresh()
            out["refresh_without_changes_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            out["refresh_changed"] = changed
    await store.close()
    return out


async def _suite(children: int, year: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-measures-"))
    try:
        store_path = await _generated_store(folder, children)
        store = SqliteStore(f"sqlite:///{store_path}")
        await store.open()
        analytics = Analytics(store)
        await analytics.ready()
        build = analytics.warehouse.last_refresh_seconds
        measures = _measures(analytics, year)
        await analytics.stop()
        views = await _views(store)
        started, count = time.perf_counter(), 0
        async for stored in store.iterate("Observation"):
            orjson.loads(stored.body)
            count += 1
        parse_rate = count / (time.perf_counter() - started) if count else 0.0
        await store.close()
        return {"build": build, "measures": measures, "views": views, "parse_rate": parse_rate}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def suite(quick: bool, workdir: Path) -> dict[str, Any]:
    """For scripts/bench/run_all.py: measures and views on a generated population (quick: 200
    children), beside the warehouse build and a plain read-and-parse of the store."""
    from run_all import figure  # type: ignore[import-not-found]

    result = asyncio.run(_suite(200 if quick else 2000, 2025))
    figures = [
        figure(
            "all measures, all districts, one year",
            result["measures"]["all_measures_all_districts_seconds"],
            "s",
            result["build"],
            "building the warehouse they read",
            higher_is_better=False,
        ),
        figure(
            "shipped views to Parquet",
            result["views"]["all"]["rows_per_second"],
            "rows/s",
            round(result["parse_rate"]),
            "reading and parsing Observations from the store",
            higher_is_better=True,
        ),
    ]
    return {"figures": figures, "details": result}


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--store-path", type=Path, help="an existing SQLite store (opened read-only in spirit)"
    )
    parser.add_argument(
        "--children", type=int, default=2000, help="generated children when no store is given"
    )
    parser.add_argument("--year", type=int, default=2025)
    parser.add_argument(
        "--views-only", action="store_true", help="only the views' throughput (no warehouse, measures, pages)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="worker processes for the view runs (default: the server's TERMTEM_VIEW_PROCESSES)",
    )
    parser.add_argument(
        "--compare-general",
        action="store_true",
        help="also run the views with the FHIRPath engine path by path (the throughput without the plan)",
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-measures-"))
    results: dict[str, Any] = {"machine": machine()}
    try:
        shared = args.store_path if args.store_path and args.store_path.exists() else None
        with shared_store_lock(shared):
            if shared is not None:
                store_path = str(shared)
                results["store"] = {"path": store_path, "kind": "existing"}
            else:
                t0 = time.perf_counter()
                store_path = await _generated_store(folder, args.children)
                results["store"] = {
                    "kind": "generated",
                    "children": args.children,
                    "build_seconds": round(time.perf_counter() - t0, 1),
                }
            if args.views_only:
                readonly = _ReadOnlyStore(store_path)
                results["views"] = await _views(readonly, processes=args.processes)
                print(f"views: {results['views']['all']}", flush=True)
                if args.compare_general:
                    results["views_general_evaluator"] = await _views(readonly, general=True)
                    print(f"views (general): {results['views_general_evaluator']['all']}", flush=True)
                await readonly.close()
                print(f"wrote {write_results('measures-views', results)}")
                return
            store = SqliteStore(f"sqlite:///{store_path}")
            await store.open()
            count = sum(1 for _ in store._conn.execute("SELECT 1 FROM resource"))
            results["store"]["resources"] = count
            print(f"store: {count:,} resources ({results['store']['kind']})", flush=True)

            analytics = Analytics(store)
            t0 = time.perf_counter()
            await analytics.ready()
            results["warehouse"] = {
                "build_and_figures_seconds": round(time.perf_counter() - t0, 1),
                "build_seconds": round(analytics.warehouse.last_refresh_seconds, 1),
                "figures_seconds": round(analytics.figures.seconds, 1) if analytics.figures else None,
                "rows": {
                    name: analytics.warehouse.query(f"SELECT count(*) FROM {name}")[0][0]
                    for name in analytics.warehouse.columns()
                },
            }
            print(f"warehouse: {results['warehouse']}", flush=True)
            results["measures"] = _measures(analytics, args.year)
            print(f"measures: {results['measures']}", flush=True)
            await analytics.stop()
            results["views"] = await _views(store, processes=args.processes)
            print(f"views: {results['views']['all']}", flush=True)
            if args.compare_general:
                results["views_general_evaluator"] = await _views(store, general=True)
                print(
                    f"views (engine, path by path): {results['views_general_evaluator']['all']}", flush=True
                )
            await store.close()
            results["pages"] = await _pages(f"sqlite:///{store_path}", folder, 3600)
            print(f"pages: {results['pages']}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"wrote {write_results('measures', results)}")


if __name__ == "__main__":
    asyncio.run(main())
