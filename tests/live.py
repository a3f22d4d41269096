"""The real server (`termtem serve` under uvicorn) on a free loopback port, for end-to-end tests.

One way to start it, wait until it answers and stop it, so every test that needs a real process (kill -9,
worker processes, hostile sockets, a browser) starts it the same way. The server's output goes to a log
file next to the store (a pipe nobody reads could fill up and stall the server).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    host: str = "127.0.0.1"

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base(self) -> str:
        """The FHIR base URL."""
        return f"{self.origin}/fhir"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextmanager
def serve(
    store: Path | str,
    *,
    auth: bool = False,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    ready: str = "/fhir/metadata",
    timeout: float = 240,
    cwd: Path | None = None,
) -> Iterator[LiveServer]:
    """Start the server on ``store`` (a path or a store URL), yield it once ``ready`` answers 200, stop it
    (SIGTERM) on exit. ``args`` are extra ``termtem serve`` options (e.g. ``--workers 2``)."""
    store_url = store if isinstance(store, str) else f"sqlite:///{store}"
    folder = Path(cwd or ".")
    if store_url.startswith("sqlite:///") and not store_url.endswith(":memory:"):
        folder = folder / Path(store_url.removeprefix("sqlite:///")).parent
    if not folder.is_dir():  # the server is to make it (or refuse): keep the log out of its way
        folder = Path(tempfile.mkdtemp(prefix="termtem-server-"))
    port = port or free_port()
    log = folder / f"server-{port}.log"
    command = [sys.executable, "-m", "fhir_server", "serve", "--port", str(port), "--store", store_url,
               "--log-level", "warning", "--auth", "on" if auth else "off", *args]  # fmt: skip
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd
        )
    server = LiveServer(process, port, log, host)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited ({process.returncode}):\n{server.output()}")
            try:
                if httpx.get(f"{server.origin}{ready}", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not answer within {timeout:.0f} s:\n{server.output()}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
