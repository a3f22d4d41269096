"""Notifications benchmark: write throughput and the server's CPU per write with and without 100 rest-hook
subscriptions, and delivery latency from commit to receipt.

The server runs in the benchmark's process (httpx over ASGI, auth off, a fresh store: SQLite, or the Mongo
backend on its in-process test double with ``--store mongo-double``); the receivers run in a process of
their own (one loopback HTTP server, one path per subscription). Each subscription's criteria match
every Patient written, so each write causes one event per subscription.

The deliveries run in a ``termtem deliver`` process beside the server by default (``--delivery
in-process``: the same job in the server's process and event loop; the only choice with the double).

1. W Patients written one after another without subscriptions;
2. S subscriptions created and activated (handshake); the delivery job stopped, W Patients written
   (**recording only**: what recording S events costs a write), then the job started again and the
   backlog delivered;
3. W Patients written with the job delivering beside them (**with delivery**: on a 2-core machine the
   job and the receivers take CPU from the writer too); the receivers count S x W notifications;
   latency = receipt time - the event's ``timestamp`` (the version's lastUpdated): p50/p99.

Each phase reports writes/s (wall clock) and the server process's CPU milliseconds per write (the
in-process client's share included, the same in every phase); the job's and the receivers' CPU per
event are reported beside them. ``--rate N`` paces phase 3 (latency under a steady load).

    python scripts/bench/notifications.py --subscriptions 100 --writes 200

Prints the numbers and writes bench-results/notifications-<timestamp>.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import _free_port, machine, percentile, write_results  # noqa: E402

from fhir_server.api.app import create_app  # noqa: E402
from fhir_server.config import Settings  # noqa: E402
from fhir_server.subscriptions import model  # noqa: E402

BASE = "http://bench.local/fhir"


def _receive(port: int) -> None:
    """The receiver process: records (receipt time, event timestamps) per notification; GET /stats."""
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"events": 0, "notifications": 0, "handshakes": 0, "other": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            now = time.time()
            # orjson: the receiver shares the machine's cores with the server in this benchmark
            body = orjson.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            params = body.get("entry", [{}])[0].get("resource", {}).get("parameter", [])
            kind = next((p.get("valueCode") for p in params if p.get("name") == "type"), None)
            with lock:
                if kind == "event-notification":
                    counts["notifications"] += 1
                    for p in params:
                        if p.get("name") == "notification-event":
                            stamp = next(x["valueInstant"] for x in p["part"] if x["name"] == "timestamp")
                            moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                            latencies.append(now - moment)
                            counts["events"] += 1
                elif kind == "handshake":
                    counts["handshakes"] += 1
                else:
                    counts["other"] += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            with lock:
                data = json.dumps({**counts, "latencies": latencies}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return None

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def _patient(n: int) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": "Bench", "given": [f"n{n}"]}], "gender": "female"}


def _subscription(endpoint: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "benchmark",
        "criteria": "Patient?family=Bench",
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": model.EXT_PAYLOAD_CONTENT, "valueCode": "id-only"}]},
        },
    }


async def _writes(http: httpx.AsyncClient, count: int, offset: int, rate: float = 0) -> float:
    started = time.perf_counter()
    for n in range(count):
        if rate:
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        reply = await http.post("/Patient", json=_patient(offset + n))
        assert reply.status_code == 201, reply.text
    return count / (time.perf_counter() - started)


class _Delivery:
    """The notification job the benchmark starts and stops: ``termtem deliver`` in a process of its own
    (``process``), or the same job in the server's process and event loop (``in-process``)."""

    def __init__(self, mode: str, settings: Settings, store: Any) -> None:
        self.mode, self.settings, self.store = mode, settings, store
        self.process: subprocess.Popen[bytes] | None = None
        self.job: Any = None

    def start(self) -> None:
        if self.mode == "process":
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fhir_server", "deliver", "--store", self.settings.store_url,
                 "--public-url", BASE],
                env={**os.environ, "TERMTEM_SUBSCRIPTION_LOOPBACK": "on"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        else:
            from fhir_server.subscriptions.runner import Background

            self.job = Background(self.store, self.settings, BASE)
            self.job.start()

    async def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # it gives the lease back: the next one takes over at once
            self.process.wait()
            self.process = None
        if self.job is not None:
            await self.job.stop()
            self.job = None

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.process)


async def run(
    subscriptions: int,
    writes: int,
    timeout: float,
    delivery: str = "process",
    rate: float = 0,
    store: str = "sqlite",
) -> dict[str, Any]:
    """Three phases of ``writes`` writes each: without subscriptions; with them, the delivery job stopped
    (what recording the events costs a write); with them, the job delivering beside the writes (what a
    writer sees on a shared machine: the deliveries and the receivers take CPU too)."""
    if store == "mongo-double" and delivery == "process":
        raise SystemExit("the Mongo test double lives in one process: use --delivery in-process with it")
    port = _free_port()
    receiver = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)])
    skip = 0
    stats_url = f"http://127.0.0.1:{port}/stats"
    try:
        for _ in range(100):
            try:
                httpx.get(stats_url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as tmp:
            if store == "mongo-double":
                url = f"mongomock://bench-notifications-{os.getpid()}/termtem"
            else:
                url = f"sqlite:///{tmp}/store.sqlite"
            settings = Settings(store_url=url, auth=False, public_base_url=BASE)
            settings.subscription_loopback = True
            settings.subscription_delivery = False  # the benchmark starts and stops the job itself
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                job = _Delivery(delivery, settings, app.state.store)
                transport = httpx.ASGITransport(app=app)
                async with (
                    httpx.AsyncClient(transport=transport, base_url=BASE, timeout=60) as http,
                    httpx.AsyncClient(timeout=10) as receivers,
                ):
                    await _writes(http, 20, 10_000_000)  # warm-up
                    cpu = time.process_time()
                    without = await _writes(http, writes, 0)
                    cpu_without = (time.process_time() - cpu) / writes
                    job.start()
                    for n in range(subscriptions):
                        reply = await http.post(
                            "/Subscription", json=_subscription(f"http://127.0.0.1:{port}/hook/{n}")
                        )
                        assert reply.status_code == 201, reply.text
                    deadline = time.monotonic() + timeout
                    while time.monotonic() < deadline:
                        found = (await http.get("/Subscription?status=active&_summary=count")).json()
                        if found.get("total") == subscriptions:
                            break
                        await asyncio.sleep(0.2)
                    # Recording only: the job stopped, the events wait in the outbox.
                    await job.stop()
                    cpu = time.process_time()
                    recording_only = await _writes(http, writes, writes)
                    cpu_recording = (time.process_time() - cpu) / writes
                    job.start()
                    await _wait(receivers, stats_url, subscriptions * writes, deadline)
                    # With the job delivering beside the writes.
                    before = (await receivers.get(stats_url)).json()["events"]
                    skip = before
                    started = time.perf_counter()
                    cpu, job_cpu = time.process_time(), job.cpu_seconds()
                    receiver_cpu = _cpu_seconds(receiver)
                    with_subs = await _writes(http, writes, 2 * writes, rate)
                    cpu_with = (time.process_time() - cpu) / writes
                    await _wait(receivers, stats_url, before + subscriptions * writes, deadline)
                    drained = time.perf_counter() - started
                    job_cpu = job.cpu_seconds() - job_cpu
                    receiver_cpu = _cpu_seconds(receiver) - receiver_cpu
                    server_cpu_all = time.process_time() - cpu
                    await job.stop()
        stats = httpx.get(stats_url).json()
    finally:
        receiver.terminate()
        receiver.wait()
    latencies = stats["latencies"][skip:]
    events = subscriptions * writes
    return {
        "store": store,
        "delivery": delivery,
        "subscriptions": subscriptions,
        "writes": writes,
        "writes_per_s_without": round(without, 1),
        "writes_per_s_recording_only": round(recording_only, 1),
        "writes_per_s_with": round(with_subs, 1),
        # Wall clock: what recording the events costs a writer, then what the deliveries beside it cost
        # on this machine (the job and the receivers take the same cores).
        "slowdown_pct_recording_only": round(100 * (1 - recording_only / without), 1),
        "slowdown_pct": round(100 * (1 - with_subs / without), 1),
        # CPU time of the server process per write (with the client's share, the same in every phase).
        "server_cpu_ms_per_write_without": round(cpu_without * 1000, 3),
        "server_cpu_ms_per_write_recording_only": round(cpu_recording * 1000, 3),
        "server_cpu_ms_per_write_with": round(cpu_with * 1000, 3),
        "write_cpu_increase_pct_recording_only": round(100 * (cpu_recording / cpu_without - 1), 1),
        "write_cpu_increase_pct": round(100 * (cpu_with / cpu_without - 1), 1),
        # The delivering process (--delivery process) and the receivers, per event, writes to receipt.
        "delivery_cpu_us_per_event": round(job_cpu / max(events, 1) * 1e6, 1)
        if delivery == "process"
        else "in the server process",
        "server_process_cpu_us_per_event": round(server_cpu_all / max(events, 1) * 1e6, 1),
        "receiver_cpu_us_per_event": round(receiver_cpu / max(events, 1) * 1e6, 1),
        "seconds_from_first_write_to_last_receipt": round(drained, 2),
        "notifications_expected": 2 * events,
        "notifications_received": stats["events"],
        "notification_requests": stats["notifications"],  # several events share one under load
        "latency_measured_at_writes_per_s": rate or "full speed (a burst)",
        "latency_ms_p50": round(percentile(latencies, 50) * 1000, 1),
        "latency_ms_p99": round(percentile(latencies, 99) * 1000, 1),
        "latency_ms_max": round(max(latencies, default=0) * 1000, 1),
    }


def _cpu_seconds(process: subprocess.Popen[bytes] | None) -> float:
    """User + system CPU seconds a child process has used so far (Linux /proc), 0 when unknown."""
    if process is None:
        return 0.0
    try:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


async def _wait(receivers: httpx.AsyncClient, url: str, expected: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if (await receivers.get(url)).json()["events"] >= expected:
            return
        await asyncio.sleep(0.2)


def suite(quick: bool, workdir: Path) -> dict[str, Any]:
    """For scripts/bench/run_all.py: write rate with rest-hook subscriptions beside the same writes
    without them, and the commit-to-receipt latency
    (quick: 5 subscriptions, 20 writes, delivered in-process)."""
    from run_all import figure  # type: ignore[import-not-found]

    subs, writes = (5, 20) if quick else (100, 200)
    # quick: the server's own delivery job (no second process to start in a smoke run)
    delivery = "in-process" if quick else "process"
    result = asyncio.run(run(subs, writes, 60.0 if quick else 600.0, delivery))
    figures = [
        figure(
            f"writes/s with {subs} rest-hook subscriptions",
            result["writes_per_s_with"],
            "writes/s",
            result["writes_per_s_without"],
            "the same writes without subscriptions",
            higher_is_better=True,
        ),
        figure(
            f"server CPU per write with {subs} subscriptions, delivery stopped",
            result["server_cpu_ms_per_write_recording_only"],
            "ms",
            result["server_cpu_ms_per_write_without"],
            "the same writes without subscriptions",
            higher_is_better=False,
        ),
        figure(
            "notifications received",
            result["notifications_received"],
            "notifications",
            result["notifications_expected"],
            "notifications expected",
            higher_is_better=True,
        ),
    ]
    return {"figures": figures, "details": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for deliveries")
    parser.add_argument(
        "--delivery",
        choices=("process", "in-process"),
        default="process",
        help="process: termtem deliver beside the server (default); in-process: the server's own job",
    )
    parser.add_argument(
        "--rate", type=float, default=0, help="writes/s while latency is measured (0: full speed, a burst)"
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "mongo-double"),
        default="sqlite",
        help="sqlite (default) or the Mongo backend on its in-process test double (not MongoDB; needs"
        " --delivery in-process)",
    )
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        _receive(args.receiver)
        return
    result = asyncio.run(
        run(args.subscriptions, args.writes, args.timeout, args.delivery, args.rate, args.store)
    )
    for key, value in result.items():
        print(f"{key:40} {value}")
    path = write_results("notifications", {"machine": machine(), **result})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
