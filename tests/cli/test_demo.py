"""`termtem demo` end to end: the README's "try it" path, exactly as a newcomer would run it.

A real subprocess on a free loopback port; every curl line it prints is parsed and sent, and each must
answer 200 with results in it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

_CHILDREN = "25"
_STARTUP_SECONDS = 120  # generous: a busy 2-core machine (each Patient is linked on write)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Demo:
    """A running `termtem demo` and everything it printed until it was ready."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process, self.port = process, port
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def output_until_ready(self) -> str:
        """Everything printed up to "Press Ctrl+C", then wait until the port answers."""
        seen: list[str] = []
        deadline = time.monotonic() + _STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail("termtem demo exited early:\n" + "".join(seen))
            seen.append(line)
            if line.startswith("Press Ctrl+C"):
                break
        else:
            pytest.fail("termtem demo did not get ready:\n" + "".join(seen))
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{self.port}/fhir/metadata", timeout=5).status_code == 200:
                    return "".join(seen)
            time.sleep(0.2)
        pytest.fail("the demo server never answered /metadata")


@contextlib.contextmanager
def _run_demo(data_dir: Path, *extra: str) -> Iterator[_Demo]:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "fhir_server",
        "demo",
        "--port",
        str(port),
        "--children",
        _CHILDREN,
        "--data-dir",
        str(data_dir),
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("TERMTEM_AUTH", "TERMTEM_STORE")}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8", env=env
    )
    try:
        yield _Demo(process, port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _curl_urls(output: str) -> list[str]:
    """The URL of every printed `curl` command, parsed the way a shell would."""
    urls = []
    for line in output.splitlines():
        if line.strip().startswith("curl "):
            words = shlex.split(line)
            urls.append(next(w for w in words[1:] if not w.startswith("-")))
    return urls


def _results(body: dict[str, object]) -> list[object]:
    if body.get("resourceType") == "Bundle":
        return [e["resource"] for e in body.get("entry") or []]  # type: ignore[index, union-attr]
    if body.get("resourceType") == "ValueSet":
        return list((body.get("expansion") or {}).get("contains") or [])  # type: ignore[union-attr]
    return []


def test_every_printed_example_works_against_the_demo(tmp_path: Path) -> None:
    with _run_demo(tmp_path / "demo") as demo:
        output = demo.output_until_ready()
        assert "AUTHENTICATION IS OFF" in output
        assert f"FHIR base URL: http://127.0.0.1:{demo.port}/fhir" in output
        urls = _curl_urls(output)
        # 5 about one child's record, 2 about births and their risk flags, 3 about one child across agencies
        assert len(urls) == 10, output
        assert all(u.startswith(f"http://127.0.0.1:{demo.port}/fhir/") for u in urls)
        kinds = set()
        for url in urls:
            response = httpx.get(url, timeout=30)
            assert response.status_code == 200, (url, response.text[:500])
            body = response.json()
            results = _results(body)
            assert results, (url, response.text[:500])
            kinds.add(
                body["resourceType"] if body["resourceType"] != "Bundle" else results[0]["resourceType"]
            )  # type: ignore[index]
            if "_sort=date" in url:
                dates = [r["effectiveDateTime"] for r in results]  # type: ignore[index]
                assert dates == sorted(dates) and len(dates) >= 2
            if "filter=" in url:
                wanted = httpx.URL(url).params["filter"]
                assert any(wanted in c["display"] for c in results)  # type: ignore[index]
            if "identity%7Cgolden" in url or "identity|golden" in url:  # the golden record, 2+ sources
                links = [lk for lk in results[0]["link"] if lk["type"] == "seealso"]  # type: ignore[index]
                assert len(results) == 1 and len(links) >= 2, response.text[:500]
            if ":mdm=" in url or "%3Amdm=" in url:  # every agency's record, and the golden one
                assert len(results) >= 3, response.text[:500]
            if "birth" in url and "Encounter" in url:  # each birth in its mother's pregnancy
                assert all(r["episodeOfCare"] for r in results), response.text[:500]  # type: ignore[index]
        assert kinds == {"Patient", "Observation", "Task", "ValueSet", "Encounter"}
        demo.process.terminate()
        demo.process.wait(timeout=20)
    # auth really is off: no token was sent above. A second start with --keep reuses the store.
    assert (tmp_path / "demo" / "termtem.sqlite").is_file()
    with _run_demo(tmp_path / "demo", "--keep") as again:
        output = again.output_until_ready()
        assert "reused from an earlier run" in output
        assert _curl_urls(output)[0].split("/fhir/")[1] == urls[0].split("/fhir/")[1]
        first = httpx.get(_curl_urls(output)[0], timeout=30)
        assert first.status_code == 200 and _results(first.json())
