"""CRUD benchmark: create and read throughput and latency over real HTTP at 1, 8 and 32 clients.

Starts `termtem serve` on a loopback port with a fresh store, drives it from this process with httpx,
and measures, in the same run, the storage limit: the same JSON inserted into and read from SQLite
directly (same pragmas, one transaction per insert as the server does). Prints a table and writes
bench-results/crud-<timestamp>.json.

    python scripts/bench/crud.py [--requests 2000] [--clients 1,8,32]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Server, machine, percentile, start_server, write_results


def sample_patient(n: int) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Patient",
            "identifier": [{"system": "https://terms.sil-th.org/id/th-cid", "value": f"{1100000000000 + n}"}],
            "name": [{"family": "ใจดี", "given": [f"สมชาย{n}"], "prefix": ["ด.ช."]}],
            "gender": "male" if n % 2 else "female",
            "birthDate": f"20{10 + n % 15:02d}-0{1 + n % 9}-1{n % 9}",
            "address": [{"city": "แขวงลุมพินี", "district": "เขตปทุมวัน", "state": "กรุงเทพมหานคร"}],
        }
    )


async def _run(
    base: str, clients: int, total: int, make: object, headers: dict[str, str]
) -> tuple[float, list[float], list[str]]:
    latencies: list[float] = []
    ids: list[str] = []
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60, headers=headers) as http:

        async def worker() -> None:
            for n in counter:
                started = time.perf_counter()
                response = await make(http, n)  # type: ignore[operator]
                latencies.append(time.perf_counter() - started)
                if response.status_code >= 300:
                    raise RuntimeError(f"{response.status_code}: {response.text[:200]}")
                if response.status_code == 201:
                    ids.append(response.headers["location"].split("/")[-3])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, ids


def baseline(total: int, bodies: list[bytes]) -> dict[str, float]:
    """The storage limit: the same JSON straight into SQLite, one committed transaction per insert."""
    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(Path(folder) / "raw.sqlite", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE r(rid INTEGER PRIMARY KEY, type TEXT, id TEXT, body BLOB, UNIQUE(type, id))"
        )
        started = time.perf_counter()
        for n in range(total):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO r(type, id, body) VALUES('Patient', ?, ?)", (f"p{n}", bodies[n]))
            conn.execute("COMMIT")
        insert = total / (time.perf_counter() - started)
        started = time.perf_counter()
        for n in range(total):
            conn.execute("SELECT body FROM r WHERE type='Patient' AND id=?", (f"p{n}",)).fetchone()
        read = total / (time.perf_counter() - started)
        conn.close()
    return {"insert_per_s": insert, "read_per_s": read}


_WRK_LINE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$")
_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(
    url: str, connections: int, seconds: int, body: bytes | None, folder: Path, headers: dict[str, str]
) -> dict[str, float]:
    """Drive the server with wrk (a C load generator), so the client is not what limits the figure."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if body is not None:
        script = folder / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = [==[{body.decode()}]==]\n"  # a Lua long string: the UTF-8 bytes as they are
            'wrk.headers["Content-Type"] = "application/fhir+json"\n'
            'wrk.headers["Prefer"] = "return=minimal"\n'
        )
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors: {output}")
    result = {"per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    result["requests"] = float(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    for line in output.splitlines():
        match = _WRK_LINE.match(line)
        if match:
            result[f"p{match.group(1)}_ms"] = float(match.group(2)) * _WRK_UNITS[match.group(3)]
    return result


async def run(
    requests: int = 2000,
    clients: list[int] | None = None,
    wrk_seconds: int = 8,
    auth_modes: tuple[bool, ...] = (True, False),
    workers: int | None = None,
    httpx_rows: bool = True,
) -> dict[str, Any]:
    """Measure create and read at each client count, with auth on and off, beside the raw SQLite limit.

    Rows come from a Python client (httpx, which itself tops out near 1,500 requests/s) and, where the
    ``wrk`` load generator is installed (Debian package ``wrk``), from wrk too (``client`` says which).
    With auth on every request carries a hospital client's token and is checked (token, scopes,
    ownership, consent) and audited (its AuditEvent durable before the answer), as in production.
    """
    levels = clients or [1, 8, 32]
    bodies = [sample_patient(n) for n in range(requests)]
    raw = baseline(requests, bodies)
    rows = []
    for auth in auth_modes:
        with (
            tempfile.TemporaryDirectory() as folder,
            start_server(Path(folder), auth=auth, workers=workers) as server,
        ):
            rows += await _levels(
                server, Path(folder), levels, requests, bodies, raw, wrk_seconds, httpx_rows
            )
        for row in rows:
            row.setdefault("auth", "on" if auth else "off")
    for row in rows:
        row["ratio_to_baseline"] = row["per_s"] / row["baseline_per_s"]
    return {
        "machine": machine(),
        "requests": requests,
        "workers": workers,
        "rows": rows,
        "durability": "WAL, synchronous=NORMAL (server and raw baseline alike)",
    }


async def _levels(
    server: Server,
    folder: Path,
    levels: list[int],
    requests: int,
    bodies: list[bytes],
    raw: dict[str, float],
    wrk_seconds: int,
    httpx_rows: bool,
) -> list[dict[str, Any]]:
    base, headers = server.base, server.headers
    rows: list[dict[str, Any]] = []
    ids: list[str] = []
    for level in levels:

        async def create(http: httpx.AsyncClient, n: int) -> httpx.Response:
            return await http.post(
                "/Patient",
                content=bodies[n],
                headers={"content-type": "application/fhir+json", "prefer": "return=minimal"},
            )

        count = requests if httpx_rows else min(requests, 50)
        elapsed, latencies, ids = await _run(base, level, count, create, headers)
        if httpx_rows:
            rows.append(_row("create", level, "httpx", count / elapsed, latencies, raw["insert_per_s"]))

            async def read(http: httpx.AsyncClient, n: int, ids: list[str] = ids) -> httpx.Response:
                return await http.get(f"/Patient/{ids[n]}")

            elapsed, latencies, _ = await _run(base, level, count, read, headers)
            rows.append(_row("read", level, "httpx", count / elapsed, latencies, raw["read_per_s"]))
        if shutil.which("wrk"):
            for operation, url, body, limit in (
                ("create", f"{base}/Patient", bodies[0], raw["insert_per_s"]),
                ("read", f"{base}/Patient/{ids[0]}", None, raw["read_per_s"]),
            ):
                cpu = server.cpu_seconds()
                measured = _wrk(url, level, wrk_seconds, body, folder, headers)
                requests_done = measured.pop("requests")
                spent = (server.cpu_seconds() - cpu) * 1000
                # None when wrk completed nothing in the window (a figure, not a crash)
                measured["server_cpu_ms_per_request"] = spent / requests_done if requests_done else None
                rows.append(
                    {
                        "operation": operation,
                        "clients": level,
                        "client": "wrk",
                        **measured,
                        "baseline_per_s": limit,
                    }
                )
    return rows


def _row(
    operation: str, level: int, client: str, per_s: float, latencies: list[float], limit: float
) -> dict[str, Any]:
    return {
        "operation": operation,
        "clients": level,
        "client": client,
        "per_s": per_s,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "baseline_per_s": limit,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="creates (and reads) per concurrency level"
    )
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--auth", choices=["both", "on", "off"], default="both")
    parser.add_argument(
        "--workers", type=int, default=None, help="server worker processes (default: its own)"
    )
    parser.add_argument("--wrk-seconds", type=int, default=8)
    parser.add_argument("--no-httpx", action="store_true", help="wrk rows only (needs wrk)")
    args = parser.parse_args()
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.auth]
    result = await run(
        args.requests,
        [int(c) for c in args.clients.split(",")],
        args.wrk_seconds,
        modes,
        args.workers,
        not args.no_httpx,
    )
    print(
        f"{'auth':<5}{'operation':<10}{'client':>7}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'raw SQLite/s':>14}{'ratio':>8}{'CPU ms/req':>11}"
    )
    for row in result["rows"]:
        print(
            f"{row['auth']:<5}{row['operation']:<10}{row['client']:>7}{row['clients']:>8}{row['per_s']:>10.0f}{row['p50_ms']:>9.2f}"
            f"{row['p99_ms']:>9.2f}{row['baseline_per_s']:>14.0f}{row['ratio_to_baseline']:>8.3f}"
            f"{row.get('server_cpu_ms_per_request') or float('nan'):>11.2f}"
        )
    path = write_results("crud", result)
    print(f"written {path}")


if __name__ == "__main__":
    asyncio.run(main())
