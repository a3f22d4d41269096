"""The wheel, installed into a fresh virtual environment outside the checkout, runs every command.

The wheel is built from a copy of the sources (so the checkout gets no ``build/`` folder), installed
with ``pip install --no-deps`` into a new venv, and every command runs from a folder far from the
checkout. The new venv borrows the test venv's third-party libraries through a ``.pth`` line (no
network, and the test venv's editable ``termtem`` is not activated by it: ``.pth`` files inside a
directory named by another ``.pth`` are not processed), so ``fhir_server`` can only come from the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared"
pytestmark = pytest.mark.slow

# One clean sample per format (the others carry deliberate errors).
SAMPLES = {
    "moph43": "samples/export-utf8",
    "bma-childcare-dspm": "samples/dspm-2567.xlsx",
    "bma-school-health": "samples/roster-2567.csv",
    "msdhs-case": "samples/cases-2567-05.ndjson",
}


class Installed:
    def __init__(self, venv: Path, workdir: Path) -> None:
        self.venv, self.workdir = venv, workdir
        self.termtem = venv / "bin" / "termtem"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("TERMTEM_", "PYTHON"))}

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.termtem), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.termtem), *args],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def package_dir(self) -> Path:
        out = subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", "import fhir_server; print(fhir_server.__file__)"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return Path(out.stdout.strip()).parent


def _copy_sources(target: Path) -> None:
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, target / name)
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "fhir_server", target / "fhir_server", ignore=skip)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    top = tmp_path_factory.mktemp("wheel")
    source, wheels, venv, workdir = (top / n for n in ("src", "dist", "venv", "work"))
    source.mkdir()
    workdir.mkdir()
    _copy_sources(source)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(wheels)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("termtem-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "zz-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    shutil.rmtree(source)  # nothing of the sources is left to fall back on
    yield Installed(venv, workdir)


def _wait_for(url: str, process: subprocess.Popen[str], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"the server exited early:\n{out}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_the_package_comes_from_the_wheel(installed: Installed) -> None:
    package = installed.package_dir()
    assert package.is_relative_to(installed.venv)
    assert (package / "mapping" / "formats" / "moph43" / "mapping.json").is_file()
    assert (package / "terminology" / "data" / "README.md").is_file()
    assert (package / "operations" / "definitions" / "OperationDefinition-reindex.json").is_file()
    version = installed.run("--version")
    assert version.returncode == 0 and version.stdout.startswith("termtem 0.")


def test_import_load_export_and_serve_from_the_installed_wheel(installed: Installed) -> None:
    formats = installed.package_dir() / "mapping" / "formats"
    store = f"sqlite:///{installed.workdir / 'data' / 'termtem.sqlite'}"
    for name, sample in SAMPLES.items():
        result = installed.run("import", "--format", name, str(formats / name / sample), "--store", store)
        assert result.returncode == 0, f"{name}: {result.stdout}\n{result.stderr}"
    bundle = SHARED / "testdata" / "synthea" / "R4"
    first = sorted(bundle.glob("*.json"))[0]
    loaded = installed.run("load", str(first), "--store", store)
    assert loaded.returncode == 0, loaded.stderr
    exported = installed.run("export", "exported", "--store", store, "--type", "Patient")
    assert exported.returncode == 0, exported.stderr
    patients_file = installed.workdir / "exported" / "Patient-1.ndjson"
    assert len(patients_file.read_text(encoding="utf-8").splitlines()) > 10
    assert (installed.workdir / "exported" / "manifest.json").is_file()

    port = free_port()
    server = installed.start("serve", "--port", str(port), "--store", store, "--auth", "off")
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        _wait_for(f"{base}/metadata", server)
        patients = httpx.get(f"{base}/Patient", params={"_summary": "count"}, timeout=30).json()
        assert patients["total"] > 10  # the four formats' children plus the Synthea patient
        expanded = httpx.get(
            f"{base}/ValueSet/$expand",
            params={"url": "https://termtem.org/fhir/ValueSet/th-dspm-result"},
            timeout=30,
        )
        assert expanded.status_code == 200 and expanded.json()["expansion"]["contains"]
        # and a load over HTTP into the installed server
        over_http = installed.run("load", str(sorted(bundle.glob("*.json"))[1]), "--server", base)
        assert over_http.returncode == 0, over_http.stderr
        # and a Bulk Data export from the installed server
        bulk = installed.run("export", "bulk", "--server", base, "--type", "Patient")
        assert bulk.returncode == 0, bulk.stderr
        manifest = orjson.loads((installed.workdir / "bulk" / "manifest.json").read_bytes())
        assert {o["type"] for o in manifest["output"]} == {"Patient"}
    finally:
        _stop(server)


def test_demo_from_the_installed_wheel(installed: Installed) -> None:
    port = free_port()
    demo = installed.start("demo", "--port", str(port), "--children", "25", "--data-dir", "demo")
    try:
        _wait_for(f"http://127.0.0.1:{port}/fhir/metadata", demo, seconds=180)
        found = httpx.get(f"http://127.0.0.1:{port}/fhir/Patient", params={"_count": "1"}, timeout=30)
        assert found.status_code == 200 and found.json()["entry"]
    finally:
        _stop(demo)
