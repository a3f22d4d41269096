"""Hostile requests against a running server: does one big or slow request stall everyone else?

For each shape (a 50 MB Patient of many small elements, a 50 MB Patient made of one long string, a
batch and a transaction of 10,000 entries, a body shorter than its Content-Length) this starts a fresh
`termtem serve` (auth off, loopback), sends the request, and meanwhile reads a small resource every
50 ms from another connection. It reports the big request's status and time, the server's peak
resident memory while it ran, and the latency of the small parallel reads (median and worst).
Nothing is asserted; results go to bench-results/hostile-<timestamp>.json.

    python scripts/bench/hostile.py [--mb 50] [--entries 10000] [--only patient-names,batch]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Server, machine, percentile, start_server, write_results

JSON = {"Content-Type": "application/fhir+json"}


def _patient_of_names(size: int) -> bytes:
    name = {"use": "official", "family": "Srisuk", "given": ["Somchai", "Nok"], "prefix": ["ด.ช."]}
    one = len(orjson.dumps(name)) + 1
    return orjson.dumps({"resourceType": "Patient", "name": [name] * max(1, size // one)})


def _patient_of_one_string(size: int) -> bytes:
    return orjson.dumps({"resourceType": "Patient", "name": [{"family": "ก" * (size // 3)}]})


def _bundle(kind: str, entries: int) -> bytes:
    entry = {
        "resource": {
            "resourceType": "Patient",
            "gender": "female",
            "birthDate": "2020-02-03",
            "name": [{"family": "Srisuk", "given": ["Nok"]}],
        },
        "request": {"method": "POST", "url": "Patient"},
    }
    return orjson.dumps({"resourceType": "Bundle", "type": kind, "entry": [entry] * entries})


class _Prober:
    """Reads one small resource every 50 ms on its own connection, recording latencies."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=120) as http:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    ok = http.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(time.perf_counter() - start)
                self.failures += not ok
                self._stop.wait(0.05)

    def __enter__(self) -> _Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=180)


def _post(server: Server, path: str, body: bytes) -> tuple[int, float, str]:
    start = time.perf_counter()
    try:
        reply = httpx.post(f"{server.base}/{path}", content=body, headers=JSON, timeout=600)
        status, text = reply.status_code, reply.text[:200]
    except httpx.HTTPError as exc:
        status, text = 0, f"{type(exc).__name__}: {exc}"
    return status, time.perf_counter() - start, text


def _short_body(server: Server, declared: int = 1_000_000, wait: float = 60) -> tuple[int, float, str]:
    """Declare ``declared`` bytes, send 100, then wait (at most ``wait`` s) for an answer or a close."""
    parts = urlsplit(server.base)
    start = time.perf_counter()
    with socket.create_connection((parts.hostname, parts.port), timeout=wait) as sock:
        head = (
            f"POST {parts.path}/Patient HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/fhir+json\r\nContent-Length: {declared}\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"resourceType":"Patient","name":[' + b" " * 66)
        data = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                data += chunk
                if b"\r\n\r\n" in data:
                    break
    line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    status = int(line.split()[1]) if line.startswith("HTTP/") else 0
    return status, time.perf_counter() - start, line or "connection closed without an answer"


def _shapes(mb: int, entries: int) -> dict[str, Callable[[Server], tuple[int, float, str]]]:
    size = mb * 1024 * 1024
    return {
        "patient-names": lambda s: _post(s, "Patient", _patient_of_names(size)),
        "patient-string": lambda s: _post(s, "Patient", _patient_of_one_string(size)),
        "batch": lambda s: _post(s, "", _bundle("batch", entries)),
        "transaction": lambda s: _post(s, "", _bundle("transaction", entries)),
        "short-body": _short_body,
    }


def run(mb: int, entries: int, only: set[str] | None, extra: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, send in _shapes(mb, entries).items():
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory() as tmp, start_server(Path(tmp), extra=extra) as server:
            created = httpx.post(f"{server.base}/Patient", json={"resourceType": "Patient"}, headers=JSON)
            probe_url = f"{server.base}/Patient/{created.json()['id']}"
            idle = server.peak_memory_bytes()
            with _Prober(probe_url) as quiet:
                time.sleep(0.5)
            with _Prober(probe_url) as prober:
                time.sleep(0.3)
                status, seconds, text = send(server)
                time.sleep(0.3)
            lat = prober.latencies
            results[name] = {
                "status": status,
                "seconds": round(seconds, 2),
                "answer": text,
                "peak_memory_mb": round(server.peak_memory_bytes() / 2**20),
                "memory_before_mb": round(idle / 2**20),
                "probe_count": len(lat),
                "probe_failures": prober.failures,
                "probe_p50_ms": round(percentile(lat, 50) * 1000, 1),
                "probe_max_ms": round(max(lat, default=0) * 1000, 1),
                "quiet_p50_ms": round(percentile(quiet.latencies, 50) * 1000, 1),
            }
            r = results[name]
            print(
                f"{name:15} status {status:3} in {seconds:6.2f} s  peak {r['peak_memory_mb']:5} MB  "
                f"parallel read p50 {r['probe_p50_ms']:7.1f} ms max {r['probe_max_ms']:8.1f} ms "
                f"({len(lat)} reads, {prober.failures} failed)",
                flush=True,
            )
    return results


def suite(quick: bool, workdir: Path) -> dict[str, Any]:
    """For scripts/bench/run_all.py: the worst parallel read while each big request runs, beside the
    same read on the quiet server (quick: 5 MB bodies and 200-entry bundles, no slow-body wait)."""
    from run_all import figure  # type: ignore[import-not-found]

    mb, entries = (5, 200) if quick else (50, 10_000)
    only = {"patient-names", "batch", "transaction"} if quick else None
    results = run(mb, entries, only, [])
    figures = [
        figure(
            f"parallel read while {name} runs (max)",
            row["probe_max_ms"],
            "ms",
            row["quiet_p50_ms"],
            "the same read on the quiet server (p50)",
            higher_is_better=False,
            status=row["status"],
        )
        for name, row in results.items()
    ]
    return {"figures": figures, "details": {"mb": mb, "entries": entries, "results": results}}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=50, help="size of the big bodies in MB")
    parser.add_argument("--entries", type=int, default=10_000, help="entries of the batch and transaction")
    parser.add_argument("--only", default="", help="comma-separated shapes")
    parser.add_argument("--server-arg", action="append", default=[], help="extra `termtem serve` argument")
    args = parser.parse_args()
    only = {s for s in args.only.split(",") if s} or None
    results = run(args.mb, args.entries, only, args.server_arg)
    path = write_results(
        "hostile", {"machine": machine(), "mb": args.mb, "entries": args.entries, "results": results}
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
