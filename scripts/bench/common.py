"""What every benchmark shares: the machine description, percentiles, a server to measure, results."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench-results"


def machine() -> dict[str, Any]:
    memory = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    return {
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_bytes(orjson.dumps({"benchmark": name, "at": stamp, **data}, option=orjson.OPT_INDENT_2))
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    base: str
    pid: int

    def peak_memory_bytes(self) -> int:
        """The server process's peak resident memory (VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0


@contextlib.contextmanager
def start_server(
    folder: Path, *, store_url: str | None = None, extra: list[str] | None = None
) -> Iterator[Server]:
    """`termtem serve` on a loopback port (auth off where the option exists)."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "fhir_server",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--store",
        store_url or f"sqlite:///{folder / 'bench.sqlite'}",
        *(extra or []),
    ]
    if "--auth" not in command:
        command += ["--auth", "off"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/metadata", timeout=5).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError("the server did not start")
        yield Server(base, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
