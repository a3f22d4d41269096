"""The benchmark runner end to end in quick mode: every script in scripts/bench/ reports figures, each with
a same-run baseline and the ratio, into one JSON file. Timings are never asserted, only their presence."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import orjson

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "scripts" / "bench"


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run_all", BENCH / "run_all.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _present() -> set[str]:
    return {
        p.stem
        for p in BENCH.glob("*.py")
        if p.stem not in ("common", "run_all") and not p.stem.startswith("_")
    }


def test_quick_run_reports_every_benchmark_with_baselines(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run_all.py"),
            "--quick",
            "--results-dir",
            str(tmp_path / "results"),
            "--search-store",
            str(tmp_path / "search.sqlite"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        check=False,
    )
    written = list((tmp_path / "results").glob("*.json"))
    assert len(written) == 1, done.stdout + done.stderr
    report = orjson.loads(written[0].read_bytes())
    assert report["mode"] == "quick"
    assert report["machine"]["cores"] >= 1 and report["machine"]["memory_bytes"] > 0
    assert set(report["benchmarks"]) == _present()
    for name, bench in report["benchmarks"].items():
        assert not bench.get("error"), f"{name}: {bench.get('traceback') or bench.get('error')}"
        assert bench["figures"], name
        for figure in bench["figures"]:
            value, baseline, ratio = figure["value"], figure["baseline"], figure["ratio"]
            assert all(isinstance(x, float | int) and math.isfinite(x) for x in (value, baseline, ratio)), (
                figure
            )
            assert value > 0 and baseline > 0, figure
            assert math.isclose(ratio, value / baseline, rel_tol=1e-9), figure
            assert figure["unit"] and figure["baseline_name"], figure
        assert name in done.stdout
    assert done.returncode == 0, done.stderr[-3000:]


def test_search_report_lines_become_figures_only_where_sql_exists() -> None:
    text = (
        "\n1 client(s), ms: kind, store p50, p99 | hand-written SQL p50, p99\n"
        "  token                0.35     0.50 |     0.06     0.09\n"
        "  _include             1.20     1.90\n"
        "\n8 client(s), ms: kind, store p50, p99 | hand-written SQL p50, p99\n"
        "  date range           3.30     4.00 |     0.75     0.80\n"
    )
    figures = _runner().parse_search_output(text)
    assert [(f["name"], f["value"], f["baseline"]) for f in figures] == [
        ("token, 1 client(s) (p50)", 0.35, 0.06),
        ("date range, 8 client(s) (p50)", 3.3, 0.75),
    ]
    assert all(f["higher_is_better"] is False for f in figures)


def test_a_script_without_a_runner_hook_is_reported_not_skipped(tmp_path: Path) -> None:
    runner = _runner()
    sys.modules["no_hook_bench"] = ModuleType("no_hook_bench")
    try:
        out = runner.run_one("no_hook_bench", True, tmp_path)
    finally:
        del sys.modules["no_hook_bench"]
    assert out["figures"] == [] and "no suite(quick, workdir)" in out["error"]
