"""Ingest benchmark: every shared Synthea bundle into an empty store over HTTP, with 1, 2 and 4 workers.

Reports resources/s committed and the server's peak memory, beside the storage limit measured in the same
run: the same resources' raw JSON inserted straight into SQLite (one transaction per bundle).
Durability: WAL with synchronous=NORMAL (the server default; TERMTEM_SQLITE_SYNC=full for power-loss safety).

    python scripts/bench/ingest.py [--workers 1,2,4] [--data ../shared/testdata/synthea/R4]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, start_server, write_results

from fhir_server.loading import DEDUPLICATED_TYPES, load_paths
from fhir_server.loading.runner import ServerTarget


def raw_baseline(files: list[Path]) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(Path(folder) / "raw.sqlite", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE r(rid INTEGER PRIMARY KEY, type TEXT, id TEXT, body BLOB, UNIQUE(type, id))"
        )
        count = 0
        started = time.perf_counter()
        for path in files:
            bundle = orjson.loads(path.read_bytes())
            conn.execute("BEGIN IMMEDIATE")
            for n, entry in enumerate(bundle["entry"]):
                resource = entry["resource"]
                conn.execute(
                    "INSERT INTO r(type, id, body) VALUES(?,?,?)",
                    (resource["resourceType"], f"{path.stem}-{n}", orjson.dumps(resource)),
                )
                count += 1
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return count, count / elapsed


async def _run_level(
    files: list[Path], workers: int, auth: bool, processes: int | None, role: str
) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as folder,
        start_server(Path(folder), auth=auth, workers=processes, role=role) as server,
    ):
        target = ServerTarget(server.base, server.token)
        started = time.perf_counter()
        summary = await load_paths(files, target, workers=workers, dedupe=DEDUPLICATED_TYPES)
        elapsed = time.perf_counter() - started
        await target.close()
        if summary.failures:
            raise RuntimeError(f"load failed: {summary.failures[:3]}")
        committed = summary.created + summary.updated
        return {
            "auth": "on" if auth else "off",
            "workers": workers,
            "resources": committed,
            "seconds": elapsed,
            "per_s": committed / elapsed,
            "peak_server_memory_mb": server.peak_memory_bytes() / 2**20,
        }


def run(
    files: list[Path],
    workers: list[int] | None = None,
    auth_modes: tuple[bool, ...] = (True, False),
    processes: int | None = None,
    role: str = "hospital",
) -> dict[str, Any]:
    """Load ``files`` into a fresh server at each worker count, auth on (a ``role`` client: every
    resource checked, stamped and audited) and off, beside the raw SQLite limit."""
    count, raw_per_s = raw_baseline(files)
    rows = [
        asyncio.run(_run_level(files, w, auth, processes, role))
        for auth in auth_modes
        for w in workers or [1, 2, 4]
    ]
    for row in rows:
        row["baseline_per_s"] = raw_per_s
        row["ratio_to_baseline"] = row["per_s"] / raw_per_s
    return {
        "machine": machine(),
        "bundles": len(files),
        "resources": count,
        "durability": "WAL, synchronous=NORMAL",
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,4", help="concurrent loader connections")
    parser.add_argument("--auth", choices=["both", "on", "off"], default="both")
    parser.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "testdata" / "synthea" / "R4")
    args = parser.parse_args()
    files = sorted(args.data.glob("*.json"), key=lambda p: (not p.name[0].islower(), p.name))
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.auth]
    result = run(files, [int(w) for w in args.workers.split(",")], modes)
    raw_per_s = result["rows"][0]["baseline_per_s"]
    print(f"{len(files)} bundles, {result['resources']} resources; durability WAL synchronous=NORMAL")
    print(
        f"{'auth':<5}{'workers':>8}{'resources/s':>13}{'seconds':>9}{'peak MB':>9}"
        f"{'raw SQLite/s':>14}{'ratio':>8}"
    )
    for row in result["rows"]:
        print(
            f"{row['auth']:<5}{row['workers']:>8}{row['per_s']:>13.0f}{row['seconds']:>9.1f}{row['peak_server_memory_mb']:>9.0f}"
            f"{raw_per_s:>14.0f}{row['ratio_to_baseline']:>8.3f}"
        )
    path = write_results("ingest", result)
    print(f"written {path}")


if __name__ == "__main__":
    main()
