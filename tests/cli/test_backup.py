"""`termtem backup` while the server writes, and `termtem restore` into a store a server then serves."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from fhir_server.storage.backup import describe
from tests.live import serve

pytestmark = pytest.mark.slow


def _termtem(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhir_server", *args], cwd=cwd, capture_output=True, text=True, timeout=180
    )


@contextmanager
def _serving(store: str, cwd: Path) -> Iterator[str]:
    with serve(store, cwd=cwd, ready="/ready", timeout=90) as live:
        yield live.base


def _consistent(path: Path) -> None:
    """Every current resource has its version in the history (a torn copy would break this)."""
    conn = sqlite3.connect(path)
    try:
        orphans = conn.execute(
            "SELECT count(*) FROM resource r LEFT JOIN history h ON h.rid = r.rid AND h.version = r.version"
            " WHERE h.seq IS NULL"
        ).fetchone()[0]
    finally:
        conn.close()
    assert orphans == 0


def test_backup_while_serving_then_restore_and_serve(tmp_path: Path) -> None:
    live = f"sqlite:///{tmp_path / 'live' / 'termtem.sqlite'}"
    copy = tmp_path / "backups" / "nightly.sqlite"
    written: list[str] = []
    with _serving(live, tmp_path) as base:
        stop = threading.Event()

        def write() -> None:
            with httpx.Client(timeout=30) as http:
                while not stop.is_set():
                    reply = http.post(f"{base}/Patient", json={"resourceType": "Patient", "gender": "female"})
                    if reply.status_code == 201:
                        written.append(reply.json()["id"])

        writer = threading.Thread(target=write)
        writer.start()
        try:
            while len(written) < 20:
                time.sleep(0.1)
            made = _termtem("backup", "--store", live, "--to", str(copy), cwd=tmp_path)
            count_at_backup = len(written)
            while len(written) < count_at_backup + 10:  # the server kept writing
                time.sleep(0.1)
        finally:
            stop.set()
            writer.join(timeout=60)
        assert made.returncode == 0, made.stderr
        assert "integrity check ok" in made.stdout
        in_use = _termtem("restore", str(copy), "--store", live, cwd=tmp_path)
        assert in_use.returncode == 3 and "in use" in in_use.stderr
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    _consistent(copy)
    report = describe(copy)
    conn = sqlite3.connect(copy)
    # The writer's Patients (the identity layer adds a golden record per child, which searches leave out).
    stored = {row[0] for row in conn.execute("SELECT id FROM resource WHERE type = 'Patient'")}
    backed_up = len(stored & set(written))
    conn.close()
    assert 20 <= backed_up < len(written)

    restored = f"sqlite:///{tmp_path / 'restored' / 'termtem.sqlite'}"
    result = _termtem("restore", str(copy), "--store", restored, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"restored {report.resources} resources" in result.stdout
    again = _termtem("restore", str(copy), "--store", restored, cwd=tmp_path)
    assert again.returncode == 0 and "kept at" in again.stdout
    assert list((tmp_path / "restored").glob("termtem.sqlite.before-restore-*"))
    with _serving(restored, tmp_path) as base:
        counted = httpx.get(f"{base}/Patient", params={"_summary": "count"}, timeout=30).json()
        assert counted["total"] == backed_up
        some = httpx.get(f"{base}/Patient/{written[0]}", timeout=30)
        assert some.status_code == 200


def test_backup_refuses_what_it_cannot_copy(tmp_path: Path) -> None:
    mongo = _termtem("backup", "--store", "mongodb://db.example/termtem", cwd=tmp_path)
    assert mongo.returncode == 3 and "mongodump" in mongo.stderr and "Traceback" not in mongo.stderr
    missing = _termtem("backup", "--store", f"sqlite:///{tmp_path / 'none.sqlite'}", cwd=tmp_path)
    assert missing.returncode == 3 and "no store" in missing.stderr
    newer = tmp_path / "newer.sqlite"
    conn = sqlite3.connect(newer)
    for statement in (
        "CREATE TABLE resource(rid INTEGER PRIMARY KEY, type, id, version, last_updated, method, body)",
        "CREATE TABLE history(seq INTEGER PRIMARY KEY, rid, type, id, version, last_updated, method, body)",
        "CREATE TABLE kv(namespace, key, value)",
    ):
        conn.execute(statement)
    conn.execute("INSERT INTO kv VALUES ('termtem', 'schema', ?)", (orjson.dumps({"version": 99}),))
    conn.commit()
    conn.close()
    refused = _termtem("restore", str(newer), "--store", f"sqlite:///{tmp_path / 'x.sqlite'}", cwd=tmp_path)
    assert refused.returncode == 3 and "schema version 99" in refused.stderr
    assert not (tmp_path / "x.sqlite").exists()
    assert os.listdir(tmp_path).count("x.sqlite") == 0
