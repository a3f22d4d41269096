"""What every benchmark shares: the machine description, percentiles, a server to measure, results."""

from __future__ import annotations

import contextlib
import fcntl
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


@contextlib.contextmanager
def shared_store_lock(store: Path | None) -> Iterator[None]:
    """Read an existing benchmark store under a shared ``flock`` of the file named by
    ``TERMTEM_BENCH_LOCK`` (engineers sharing one large store agree on it; whoever rebuilds the store
    takes it exclusively). Without the variable, or for a store built by the benchmark, nothing."""
    name = os.environ.get("TERMTEM_BENCH_LOCK")
    if store is None or not name:
        yield
        return
    with open(name, "a") as handle:
        print(f"waiting for a shared lock on {name} ...", flush=True)
        fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    store_url: str = ""
    token: str | None = None  # with auth on: a bearer token of a registered hospital client

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and its worker processes (user + system).

        On a shared machine wall-clock rates move with everyone else's load; CPU per request does not.
        """
        total = 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in _process_tree(self.pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def peak_memory_bytes(self) -> int:
        """Peak resident memory (VmHWM) of the server: summed over its worker processes, if any."""
        total = 0
        for pid in _process_tree(self.pid):
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
        return total


def _process_tree(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            for child in task.read_text().split():
                found += _process_tree(int(child))
    return found


@contextlib.contextmanager
def start_server(
    folder: Path,
    *,
    store_url: str | None = None,
    extra: list[str] | None = None,
    auth: bool = False,
    workers: int | None = None,
    role: str = "hospital",
) -> Iterator[Server]:
    """`termtem serve` on a loopback port, auth off unless ``auth`` (then with a registered client).

    With auth on, a hospital client is registered in the store (``termtem client add``) and its access
    token (``termtem token``) is on ``Server.token``: the server then checks the token, the scopes,
    ownership and consent, and writes an AuditEvent for every request, as it runs in production.
    """
    port = _free_port()
    store_url = store_url or f"sqlite:///{folder / 'bench.sqlite'}"
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
        store_url,
        *(extra or []),
    ]
    if "--auth" not in command:
        command += ["--auth", "on" if auth else "off"]
    if workers is not None:
        command += ["--workers", str(workers)]
    env = {**os.environ, "TERMTEM_DATA_DIR": str(folder / "data"), "TERMTEM_TOKEN_LIFETIME": "3600"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/metadata", timeout=5).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError("the server did not start")
        server = Server(base, process.pid, store_url)
        if auth:
            server.token = _register_client(folder, store_url, base, role)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def _register_client(folder: Path, store_url: str, base: str, role: str) -> str:
    """Register a client of ``role`` (its agency a hospital) and get its token, as `termtem client add`
    and `termtem token` do (in this process: two fewer interpreter start-ups per measured server)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from fhir_server.cli.clients import client_assertion
    from fhir_server.security import keys, roles
    from fhir_server.security.agencies import AgencyRecord, AgencyRegistry
    from fhir_server.security.clients import ClientRecord, ClientRegistry
    from fhir_server.security.tokens import ASSERTION_TYPE
    from fhir_server.storage.sqlite.store import SqliteStore

    name, org = f"bench-{role}", "Organization/bench-hospital"
    private = keys.generate_private_jwk("EC", "ES384")
    key_file = folder / "keys" / f"{name}.jwk.json"
    keys.save_private_jwk(key_file, private)
    scopes = roles.get_role(role).default_scopes

    async def register() -> None:
        store = SqliteStore(store_url)
        await store.open()
        try:
            await AgencyRegistry(store).set(AgencyRecord(org, "hospital"))
            await ClientRegistry(store).add(
                ClientRecord(
                    id=name,
                    name=name,
                    organization=org,
                    role=role,
                    scopes=scopes,
                    jwks={"keys": [keys.public_jwk(private)]},
                )
            )
        finally:
            await store.close()

    with ThreadPoolExecutor(max_workers=1) as thread:  # the caller may be inside an event loop
        thread.submit(asyncio.run, register()).result()
    token_url = httpx.get(f"{base}/.well-known/smart-configuration", timeout=30).json()["token_endpoint"]
    reply = httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(name, key_file, token_url),
            "scope": scopes,
        },
        timeout=60,
    )
    reply.raise_for_status()
    return str(reply.json()["access_token"])
