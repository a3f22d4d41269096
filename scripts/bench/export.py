"""Bulk export benchmark: system export and a researcher's de-identified export, beside a raw SQL scan.

    # on the 1M-resource store the search benchmark builds (built first if missing: ~20 min)
    python scripts/bench/export.py --store-path /data/search-1m.sqlite
    python scripts/bench/export.py --store-path /tmp/small.sqlite --resources 20000

Each export runs in its own process (so its peak RSS is its own) through the real export job
(``fhir_server.export``: byte-bounded scan pages, NDJSON files, checkpoints):

- plain: a system-level export as an unrestricted operator sees it (every type but AuditEvent);
- de-identified: a Patient-level export as a researcher gets it: the consent restriction compiled into
  every scan (every child of the store consented, so the consent clause runs in full), pseudonyms,
  removal, date shifting and k-anonymity (k=5).

The baseline is the raw SQL scan of the same bodies (``SELECT body ... ORDER BY rid``) in the same run.
RSS is sampled every half second during each export: flat means the export's memory does not grow with
its size. Nothing is asserted (benchmarks report; tests never assert timings).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import percentile  # noqa: E402


def _rss_mb(field: str = "VmRSS") -> float:
    """Resident memory (MB). RssAnon is the process's own memory; VmRSS adds the file pages it maps
    (SQLite maps up to 256 MB of the database file: page cache that the kernel can take back)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _types(deidentified: bool) -> list[str]:
    from fhir_server import definitions
    from fhir_server.security.access import patient_links
    from fhir_server.security.roles import IDENTIFIED_TYPES

    if deidentified:
        return sorted(
            t for t in patient_links() if t not in IDENTIFIED_TYPES - {"Patient"} and t != "AuditEvent"
        )
    return sorted(t for t in definitions.resource_types() if t != "AuditEvent")


async def _quick_store(path: Path, resources: int) -> None:
    from search import _generated, _load_direct

    from fhir_server.storage.sqlite.store import SqliteStore

    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    await _load_direct(store, _generated(resources, 7), dedupe=False)
    await store.close()


def raw_scan(path: Path, types: list[str]) -> dict[str, Any]:
    """The same bodies read by hand-written SQL in storage order: the storage limit."""
    conn = sqlite3.connect(path)
    marks = ",".join("?" * len(types))
    started, count, size = time.perf_counter(), 0, 0
    for (body,) in conn.execute(
        f"SELECT body FROM resource WHERE type IN ({marks}) AND method != 'DELETE' ORDER BY rid", types
    ):
        count += 1
        size += len(body)
    seconds = time.perf_counter() - started
    conn.close()
    return {
        "resources": count,
        "bytes": size,
        "seconds": seconds,
        "per_s": count / seconds if seconds else 0.0,
    }


async def _probe_ids(store: Any) -> list[tuple[str, str]]:
    from fhir_server.search.query import SearchQuery

    page = await store.scan(SearchQuery(("Observation",)), 0, limit=200)
    return [(s.resource_type, s.id) for s in page.resources] or [("Patient", "none")]


async def _read_latencies(
    store: Any, ids: list[tuple[str, str]], seconds: float, until: Any = None
) -> list[float]:
    """Point reads every 10 ms on the export's own event loop, as interactive requests would be served
    beside it (ms each): how much the export delays them."""
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline and not (until is not None and until.done()):
        rtype, id_ = ids[n % len(ids)]
        n += 1
        started = time.perf_counter()
        await asyncio.sleep(0)  # waits for the loop like a request would
        await store.read(rtype, id_)
        out.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)
    return out


async def _consented_access(store: Any) -> Any:
    """A researcher's restriction where every child of the store consented to research for every class."""
    from fhir_server.search.access import Access, Grant
    from fhir_server.search.query import SearchQuery
    from fhir_server.security.access import OWNER_TAG_SYSTEM, open_types, owner_keys, patient_links

    children: set[str] = set()
    after = 0
    while True:
        # small pages: this harness's own reading must not weigh on the export's memory it measures
        page = await store.scan(SearchQuery(("Patient",)), after, limit=2000, max_bytes=4 << 20)
        children |= {s.id for s in page.resources}
        if page.last is None:
            break
        after = page.last
    everyone = frozenset(children)
    types = frozenset(_types(True))
    grants = tuple(Grant(t, keys, everyone) for t, keys in patient_links().items() if t in types)
    return Access(
        types=types,
        open_types=open_types() & types,
        owner_system=OWNER_TAG_SYSTEM,
        owner_code="Organization/bench-research",
        owner_keys=owner_keys(),
        grants=grants,
    ), len(children)


async def run_export(
    path: Path, deidentified: bool, out: Path, processes: int = 0, k: int = 5
) -> dict[str, Any]:
    """One export through the export job, in this process; returns its throughput and memory."""
    from fhir_server import jobs
    from fhir_server.config import Settings
    from fhir_server.export import job as export_job
    from fhir_server.export import pseudonyms, service
    from fhir_server.export.files import remove_folder
    from fhir_server.storage.sqlite.store import SqliteStore

    url = f"sqlite:///{path}"
    store = SqliteStore(url)
    await store.open()
    had_secret = await store.kv_get(pseudonyms.NAMESPACE, "pseudonym-root") is not None
    details: dict[str, Any] = {}
    if deidentified:
        access, children = await _consented_access(store)
        details["consented_children"] = children

        async def restriction(store: Any, caller: Any, deidentify: bool) -> Any:
            return access, None

        export_job.restriction = restriction  # the researcher's view, without a client registry in the store
    settings = Settings(store_url=url, auth=False)
    settings.export_processes = processes
    settings.export_k = k
    samples: list[float] = []
    anon: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            samples.append(_rss_mb())
            anon.append(_rss_mb("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    folder = out / ("deidentified" if deidentified else "plain")
    started = await service.kick_off(
        store=store,
        settings=settings,
        base_url="file:",
        parameters={
            "resourceType": "Parameters",
            "parameter": ([{"name": "deidentify", "valueString": "true"}] if deidentified else []),
        },
        level="patient" if deidentified else "system",
        group_id=None,
        prefer={"respond-async": ""},
        principal=None,
        purpose=None,
        request_url="bench",
        folder=folder,
        project="bench" if deidentified else None,
    )
    rss_before = _rss_mb()
    probe_ids = await _probe_ids(store)
    idle = await _read_latencies(store, probe_ids, 2.0)
    sampler.start()
    t0 = time.perf_counter()
    export_task = asyncio.ensure_future(jobs.run_now(store, started.job_id))
    busy: list[float] = []
    while not export_task.done():
        busy += await _read_latencies(store, probe_ids, 1.0, until=export_task)
    job = await export_task
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    details["read_latency_ms"] = {
        "idle": {"p50": percentile(idle, 50), "p99": percentile(idle, 99), "n": len(idle)},
        "during_export": {"p50": percentile(busy, 50), "p99": percentile(busy, 99), "n": len(busy)},
    }
    result = job.result or {}
    if job.state != "completed" or "manifest" not in result:
        raise RuntimeError(f"export {job.state}: {job.error or result}")
    counts = result["counts"]
    total = sum(counts.values())
    manifest = result["manifest"]
    await jobs.remove(store, started.job_id)
    if not had_secret:
        await store.kv_delete(pseudonyms.NAMESPACE, "pseudonym-root")
    await store.close()
    size = sum(p.stat().st_size for p in folder.glob("*.ndjson"))
    remove_folder(folder)
    return {
        "resources": total,
        "bytes_written": size,
        "seconds": seconds,
        "per_s": total / seconds if seconds else 0.0,
        "files": len(manifest["output"]),
        "rss_before_mb": rss_before,
        "rss_during_mb": {
            "min": min(samples, default=rss_before),
            "max": max(samples, default=rss_before),
            "samples": len(samples),
        },
        "anon_during_mb": {"min": min(anon, default=0.0), "max": max(anon, default=0.0)},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "deidentification": manifest.get("extension"),
        **details,
    }


# (name, de-identified?, worker processes for de-identification)
SCENARIOS = (
    ("plain", False, 0),
    ("deidentified", True, 0),
    ("deidentified, 1 worker", True, 1),  # the default (TERMTEM_EXPORT_PROCESSES=1)
    ("deidentified, 2 workers", True, 2),  # both cores
)


def _in_subprocess(path: Path, deidentified: bool, processes: int, out: Path, k: int) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__)),
        "--store-path",
        str(path),
        "--one",
        "deidentified" if deidentified else "plain",
        "--processes",
        str(processes),
        "--k",
        str(k),
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"export run failed: {done.stderr[-3000:]}")
    return dict(orjson.loads(done.stdout.strip().splitlines()[-1]))


def run(path: Path, out: Path, k: int = 5) -> dict[str, Any]:
    """Each scenario beside the raw scan of the same types (measured just before it)."""
    results: dict[str, Any] = {}
    for name, deidentified, processes in SCENARIOS:
        baseline = raw_scan(path, _types(deidentified))
        measured = _in_subprocess(path, deidentified, processes, out, k)
        results[name] = {**measured, "baseline": baseline}
    return results


def suite(quick: bool, workdir: Path) -> dict[str, Any]:
    """For ``run_all.py``: quick runs on a small generated store, full runs on the 1M-resource store."""
    from search import build_store

    resources = 2_000 if quick else 1_000_000
    if quick:  # generated data only (no Synthea): a smoke run
        path = workdir / "export-quick.sqlite"
        asyncio.run(_quick_store(path, resources))
    else:
        path = Path(tempfile.gettempdir()) / "termtem-bench" / f"search-{resources}.sqlite"

        async def build() -> None:
            store = await build_store(path, resources, 7, "direct", False)
            await store.close()

        asyncio.run(build())
    # k=1 on the small quick store: with a few dozen children k=5 would suppress nearly all of them
    results = run(path, workdir, k=1 if quick else 5)
    from run_all import figure

    figures = [
        figure(
            "system export, plain (operator)" if name == "plain" else f"researcher export, {name}",
            row["per_s"],
            "resources/s",
            row["baseline"]["per_s"],
            "raw SQL scan of the same bodies",
            higher_is_better=True,
            peak_rss_mb=row["peak_rss_mb"],
            resources=row["resources"],
        )
        for name, row in results.items()
    ]
    return {"figures": figures, "details": {"store": str(path), "generated_resources": resources, **results}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--store-path",
        type=Path,
        default=Path(tempfile.gettempdir()) / "termtem-bench" / "search-1000000.sqlite",
    )
    ap.add_argument(
        "--resources", type=int, default=1_000_000, help="generated resources if the store is built"
    )
    ap.add_argument("--out", type=Path, default=None, help="folder for the export files (removed after)")
    ap.add_argument("--one", choices=("plain", "deidentified"), help=argparse.SUPPRESS)
    ap.add_argument("--processes", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=5, help="k of k-anonymity for the de-identified exports")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="termtem-export-bench-"))
    if args.one:
        result = asyncio.run(
            run_export(args.store_path, args.one == "deidentified", out, args.processes, args.k)
        )
        print(orjson.dumps(result).decode())
        return
    from search import build_store

    async def build() -> None:
        store = await build_store(args.store_path, args.resources, 7, "direct", False)
        await store.close()

    asyncio.run(build())
    results = run(args.store_path, out, args.k)
    for name, row in results.items():
        base = row["baseline"]
        print(
            f"{name:24s} {row['resources']:>10,} resources in {row['seconds']:7.1f} s"
            f" = {row['per_s']:>9,.0f}/s"
            f" | raw SQL scan {base['per_s']:>10,.0f}/s ({row['per_s'] / base['per_s']:.2f}x)"
            f" | peak RSS {row['peak_rss_mb']:.0f} MB; during the export RSS"
            f" {row['rss_during_mb']['min']:.0f}-{row['rss_during_mb']['max']:.0f} MB,"
            f" of it anonymous {row['anon_during_mb']['min']:.0f}-{row['anon_during_mb']['max']:.0f} MB"
        )
        lat = row["read_latency_ms"]
        print(
            f"{'':24s} a point read on the same event loop: idle p50 {lat['idle']['p50']:.2f} /"
            f" p99 {lat['idle']['p99']:.2f} ms; during the export p50 {lat['during_export']['p50']:.2f} /"
            f" p99 {lat['during_export']['p99']:.2f} ms"
        )
    from common import write_results

    print(f"written {write_results('export', {'store': str(args.store_path), 'results': results})}")


if __name__ == "__main__":
    main()
