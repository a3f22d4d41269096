"""`termtem serve` and `termtem demo` as an operator meets them: one clear line and an exit status for
every way they cannot start, secrets redacted, JSON access lines on stderr, private files."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from fhir_server.storage.schema_version import KEY, NAMESPACE
from fhir_server.storage.sqlite.store import SqliteStore
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def _termtem(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhir_server", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]


def test_bad_store_urls_are_one_line_and_exit_2(tmp_path: Path) -> None:
    for url, expected in (("postgres://x", "unsupported store URL"), ("data.sqlite", "sqlite:///data.sqlite")):
        result = _termtem("serve", "--store", url, "--port", str(free_port()), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert expected in _one_error_line(result)


def test_an_unusable_environment_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for name, value in (("TERMTEM_MAX_COUNT", "lots"), ("TERMTEM_STORE_TIMEOUT", "10s")):
        result = _termtem("serve", "--port", str(free_port()), cwd=tmp_path, env={name: value})
        assert result.returncode == 2, result.stderr
        assert name in _one_error_line(result) and repr(value) in result.stderr


def test_an_unreachable_store_fails_fast_without_its_password(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"mongodb://admin:S3cretPass@127.0.0.1:{port}/termtem?replicaSet=rs0"
    start = time.monotonic()
    result = _termtem("serve", "--store", url, cwd=tmp_path, env={"TERMTEM_STORE_TIMEOUT": "1"})
    assert time.monotonic() - start < 60
    assert result.returncode == 3
    line = _one_error_line(result)
    assert "S3cretPass" not in result.stderr + result.stdout
    assert "admin:***@127.0.0.1" in line and "TERMTEM_STORE_TIMEOUT" in line


def test_other_commands_end_with_the_same_one_line_errors(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"mongodb://admin:S3cretPass@127.0.0.1:{port}/termtem?replicaSet=rs0"
    bundle = tmp_path / "b.json"
    bundle.write_text('{"resourceType": "Bundle", "type": "transaction", "entry": []}')
    env = {"TERMTEM_STORE_TIMEOUT": "1"}
    for args in (("client", "list", "--store", url), ("load", str(bundle), "--store", url)):
        result = _termtem(*args, cwd=tmp_path, env=env)
        assert result.returncode == 3, (args, result.stderr)
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "admin:***@" in last and "Traceback" not in result.stderr
        assert "S3cretPass" not in result.stderr + result.stdout
    bad = _termtem("load", str(bundle), "--store", "postgres://x", cwd=tmp_path)
    assert bad.returncode == 2 and "unsupported store URL" in bad.stderr


def test_a_busy_port_is_refused_before_any_work(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        served = _termtem("serve", "--port", str(port), "--auth", "off", cwd=tmp_path)
        demo = _termtem("demo", "--port", str(port), "--data-dir", "demo-here", cwd=tmp_path)
    for result in (served, demo):
        assert result.returncode == 3
        assert f"port {port} on 127.0.0.1 is already in use" in _one_error_line(result)
    assert not (tmp_path / "demo-here").exists()  # nothing generated
    assert not (tmp_path / "termtem-data").exists()  # no store opened


def test_a_store_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'newer.sqlite'}"

    async def stamp() -> None:
        store = SqliteStore(url)
        await store.open()
        await store.kv_put(NAMESPACE, KEY, {"version": 99, "software": "9.0.0"})
        await store.close()

    asyncio.run(stamp())
    result = _termtem("serve", "--store", url, "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 3
    line = _one_error_line(result)
    assert "schema version 99" in line and "Termtem 9.0.0" in line and "upgrade Termtem" in line


def test_serve_logs_json_lines_and_keeps_its_files_private(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "site" / "termtem-data"
    process = subprocess.Popen(
        [sys.executable, "-m", "fhir_server", "serve", "--port", str(port), "--log-format", "json"],
        cwd=tmp_path,
        env={**os.environ, "TERMTEM_DATA_DIR": str(data), "TERMTEM_STORE": f"sqlite:///{data}/termtem.sqlite"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            pytest.fail("the server did not become ready")
        reply = httpx.get(f"{base}/fhir/Patient?identifier=x|1101700203451", timeout=30,
                          headers={"X-Request-ID": "json-check-1"})
        assert reply.status_code == 401 and reply.headers["x-request-id"] == "json-check-1"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    records = [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = [r for r in records if r["logger"] == "termtem.access" and r["request_id"] == "json-check-1"]
    assert len(access) == 1 and access[0]["status"] == 401
    assert access[0]["path"] == "/fhir/Patient?identifier=*"
    assert "1101700203451" not in stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("termtem.sqlite", "signing-key.jwk.json"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert not (data / "termtem.sqlite").stat().st_mode & 0o077
