"""The real thing: `termtem serve` under uvicorn on a loopback port, spoken to over TCP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "fhir_server", "serve", "--port", str(port),
               "--store", f"sqlite:///{tmp_path / 'server.sqlite'}", "--log-level", "warning"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(process.stdout.read().decode() if process.stdout else "server exited")
            try:
                if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError("server did not start within 60 s")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_server_serves_fhir_over_tcp(server: str) -> None:
    capability = httpx.get(f"{server}/metadata").json()
    assert capability["resourceType"] == "CapabilityStatement"
    assert capability["fhirVersion"] == "4.0.1"
    created = httpx.post(f"{server}/Patient", json={"resourceType": "Patient", "gender": "female"})
    assert created.status_code == 201
    assert created.headers["location"].startswith(f"{server}/Patient/")
    read = httpx.get(created.headers["location"].rsplit("/_history", 1)[0])
    assert read.json()["gender"] == "female"
    assert read.headers["cache-control"] == "no-store"
