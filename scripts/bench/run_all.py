"""Run every benchmark in scripts/bench/ on generated data; one JSON file and one table.

    python scripts/bench/run_all.py --quick                  # smoke run, about a minute
    python scripts/bench/run_all.py                          # full run; search on a 1M-resource store
    python scripts/bench/run_all.py --only crud,search --search-store /data/search-1m.sqlite

Every figure is reported with a baseline measured in the same run on the same machine (the raw storage,
parsing or lookup limit: hand-written SQLite, plain pydantic models, a dict or a substring scan) and the
ratio value / baseline. The result goes to ``bench-results/<timestamp>.json`` with the machine (cores,
memory); nothing is asserted about speed.

A benchmark script joins the suite by defining ``suite(quick: bool, workdir: Path) -> dict`` returning
``{"figures": [figure(...), ...], "details": {...}}``; the scripts present before that convention are
driven by the adapters below through their own ``run(...)`` functions (search through its CLI).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import math
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import RESULTS, machine  # noqa: E402

_NOT_BENCHMARKS = {"common", "run_all"}
Adapter = Callable[[bool, Path], dict[str, Any]]


def figure(
    name: str,
    value: float,
    unit: str,
    baseline: float,
    baseline_name: str,
    *,
    higher_is_better: bool,
    **extra: Any,
) -> dict[str, Any]:
    """One measured number beside its same-run baseline; ratio = value / baseline."""
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": value / baseline if baseline else math.nan,
        "higher_is_better": higher_is_better,
        **extra,
    }


def discover() -> list[str]:
    """Every benchmark script present, by module name."""
    return sorted(
        p.stem for p in BENCH.glob("*.py") if p.stem not in _NOT_BENCHMARKS and not p.stem.startswith("_")
    )


# --- generated data shared by the benchmarks that read files -------------------------------------------


def _generated_bundles(workdir: Path, children: int) -> list[Path]:
    from fhir_server.synthetic import write_transaction_bundles

    folder = workdir / f"generated-{children}"
    if not folder.is_dir():
        write_transaction_bundles(folder, 1, children)
    return sorted(folder.glob("bundle-*.json"))


# --- adapters for the scripts that predate suite() ---------------------------------------------------


def _crud(quick: bool, workdir: Path) -> dict[str, Any]:
    crud = importlib.import_module("crud")
    result = asyncio.run(
        crud.run(
            200 if quick else 2000,
            [1, 8] if quick else [1, 8, 32],
            wrk_seconds=1 if quick else 8,
            # the smoke run measures the way the server runs (auth on, one process); the full run adds
            # auth off beside it and uses the server's default worker count
            auth_modes=(True,) if quick else (True, False),
            workers=1 if quick else None,
        )
    )
    figures = [
        figure(
            f"{r['operation']} over HTTP, auth {r.get('auth', 'off')}, {r['clients']} client(s),"
            f" {r.get('client', 'httpx')}",
            r["per_s"],
            "req/s",
            r["baseline_per_s"],
            f"raw SQLite {r['operation']}",
            higher_is_better=True,
            p50_ms=r.get("p50_ms"),
            p99_ms=r.get("p99_ms"),
            server_cpu_ms_per_request=r.get("server_cpu_ms_per_request"),
        )
        for r in result["rows"]
    ]
    return {"figures": figures, "details": result}


def _ingest(quick: bool, workdir: Path) -> dict[str, Any]:
    ingest = importlib.import_module("ingest")
    files = _generated_bundles(workdir, 40 if quick else 2000)
    # The generated bundles PUT each resource under its own id, as `termtem load` does: with auth on
    # that takes an admin client (an agency client creates with POST and gets server-assigned ids).
    result = ingest.run(
        files, [2] if quick else [1, 2, 4], (True,) if quick else (True, False), 1 if quick else None, "admin"
    )
    figures = [
        figure(
            f"transaction bundles over HTTP, auth {r.get('auth', 'off')}, {r['workers']} worker(s)",
            r["per_s"],
            "resources/s",
            r["baseline_per_s"],
            "raw SQLite insert, one transaction per bundle",
            higher_is_better=True,
            peak_server_memory_mb=r["peak_server_memory_mb"],
        )
        for r in result["rows"]
    ]
    return {
        "figures": figures,
        "details": {**result, "data": f"generated Thai population, {len(files)} bundles"},
    }


def _validation(quick: bool, workdir: Path) -> dict[str, Any]:
    validation = importlib.import_module("validation")
    result = validation.run(0.3 if quick else 3.0)  # builds its own generated household bundle
    figures = [
        figure(
            f"validate {r['input']}",
            r["ours_per_s"],
            "resources/s",
            r["r4b_pydantic_per_s"],
            "fhir.resources R4B model_validate",
            higher_is_better=True,
        )
        for r in result["rows"]
    ]
    return {"figures": figures, "details": result}


def _terminology(quick: bool, workdir: Path) -> dict[str, Any]:
    terminology = importlib.import_module("terminology")
    result = terminology.run(200 if quick else 2000, 1)
    res, base = result["results"], result["baselines"]
    pairs = [
        ("$validate-code, known code", "validate_code", "dict_lookup", "dict lookup"),
        ("$validate-code, unknown code", "validate_code_unknown", "dict_lookup", "dict lookup"),
        (
            "$expand subdistricts, Thai filter",
            "expand_filter_thai",
            "substring_scan_thai",
            "substring scan of Thai names",
        ),
        (
            "$expand subdistricts, English filter",
            "expand_filter_english",
            "substring_scan_english",
            "substring scan of English names",
        ),
    ]
    figures = [
        figure(
            f"{label} (p50)",
            res[key]["p50_ms"],
            "ms",
            base[bkey]["p50_ms"],
            bname,
            higher_is_better=False,
            p99_ms=res[key]["p99_ms"],
        )
        for label, key, bkey, bname in pairs
    ]
    return {"figures": figures, "details": result}


def _moph43_import(quick: bool, workdir: Path) -> dict[str, Any]:
    moph43 = importlib.import_module("moph43_import")
    result = moph43.run(1000 if quick else 100_000, 500, None)
    mapping = result["mapping"]
    figures = [
        figure(
            "MOPH 43-file mapping to FHIR",
            mapping["records_per_s"],
            "records/s",
            result["baseline_rows_per_s"],
            "split the same rows into fields",
            higher_is_better=True,
        )
    ]
    return {"figures": figures, "details": result}


def _security(quick: bool, workdir: Path) -> dict[str, Any]:
    security = importlib.import_module("security")
    result = security.run(60 if quick else 500, 40 if quick else 400)
    off = result["results"]["auth off"]
    figures = [
        figure(
            f"{request}, {variant} (p50)",
            row["p50_ms"],
            "ms",
            off[request]["p50_ms"],
            "the same request with auth off",
            higher_is_better=False,
            p95_ms=row["p95_ms"],
        )
        for variant, rows in result["results"].items()
        if variant != "auth off"
        for request, row in rows.items()
    ]
    return {"figures": figures, "details": result}


_SEARCH_ROW = re.compile(
    r"^  (?P<kind>.{16}) +(?P<p50>\S+) +(?P<p99>\S+)(?: \| +(?P<b50>\S+) +(?P<b99>\S+))?$"
)
_SEARCH_HEAD = re.compile(r"^(\d+) client\(s\)")
_SEARCH_STREAM = re.compile(r"streaming all Observations.*: ([\d,]+) in [\d.]+s = ([\d,]+)/s")


def _stream_baseline(path: Path) -> float:
    """Raw SQL: every current Observation body read in rowid order and parsed (resources/s)."""
    conn = sqlite3.connect(path)
    started, count = time.perf_counter(), 0
    for (body,) in conn.execute(
        "SELECT body FROM resource WHERE type = 'Observation' AND method != 'DELETE' ORDER BY rid"
    ):
        orjson.loads(body)
        count += 1
    conn.close()
    return count / (time.perf_counter() - started)


def parse_search_output(text: str) -> list[dict[str, Any]]:
    """Figures from search.py's printed report (its CLI is the interface we share with its owner)."""
    figures, clients = [], 0
    for line in text.splitlines():
        if head := _SEARCH_HEAD.match(line):
            clients = int(head.group(1))
        elif (row := _SEARCH_ROW.match(line)) and row.group("b50") and clients:
            kind = row.group("kind").strip()
            figures.append(
                figure(
                    f"{kind}, {clients} client(s) (p50)",
                    float(row.group("p50")),
                    "ms",
                    float(row.group("b50")),
                    "hand-written SQL on the same database",
                    higher_is_better=False,
                    p99_ms=float(row.group("p99")),
                    baseline_p99_ms=float(row.group("b99")),
                )
            )
    return figures


def _search_unbaselined(text: str) -> dict[str, dict[str, float]]:
    """Kinds that have no hand-written SQL equivalent: kept in the details, not in the table."""
    out: dict[str, dict[str, float]] = {}
    clients = 0
    for line in text.splitlines():
        if head := _SEARCH_HEAD.match(line):
            clients = int(head.group(1))
        elif (row := _SEARCH_ROW.match(line)) and not row.group("b50") and clients:
            out[f"{row.group('kind').strip()}, {clients} client(s)"] = {
                "p50_ms": float(row.group("p50")),
                "p99_ms": float(row.group("p99")),
            }
    return out


def _search(quick: bool, workdir: Path, store: Path | None = None) -> dict[str, Any]:
    resources = 2_000 if quick else 1_000_000
    path = store or Path(tempfile.gettempdir()) / "termtem-bench" / f"search-{resources}.sqlite"
    command = [
        sys.executable,
        str(BENCH / "search.py"),
        "--store-path",
        str(path),
        "--resources",
        str(resources),
        "--clients",
        *(["1"] if quick else ["1", "8"]),
        "--rounds",
        "3" if quick else "20",
        "--deep-page",
        "3" if quick else "50",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"search.py failed ({done.returncode}): {done.stderr[-2000:]}")
    figures = parse_search_output(done.stdout)
    if stream := _SEARCH_STREAM.search(done.stdout):
        figures.append(
            figure(
                "stream every Observation page by page (_count=1000)",
                float(stream.group(2).replace(",", "")),
                "resources/s",
                _stream_baseline(path),
                "raw SQL scan of the same bodies",
                higher_is_better=True,
            )
        )
    if not figures:
        raise RuntimeError(f"no figures in search.py's output:\n{done.stdout[-2000:]}")
    return {
        "figures": figures,
        "details": {
            "store": str(path),
            "generated_resources": resources,
            "without_baseline": _search_unbaselined(done.stdout),
            "command": command[1:],
        },
    }


ADAPTERS: dict[str, Adapter] = {
    "crud": _crud,
    "ingest": _ingest,
    "validation": _validation,
    "terminology": _terminology,
    "moph43_import": _moph43_import,
    "security": _security,
}


def run_one(name: str, quick: bool, workdir: Path, search_store: Path | None = None) -> dict[str, Any]:
    """One benchmark, timed; a failure is recorded (with its traceback), never raised."""
    started = time.perf_counter()
    try:
        if name == "search":
            out = _search(quick, workdir, search_store)
        elif name in ADAPTERS:
            out = ADAPTERS[name](quick, workdir)
        else:
            module = importlib.import_module(name)
            hook = getattr(module, "suite", None)
            if hook is None:
                raise RuntimeError(
                    f"scripts/bench/{name}.py has no suite(quick, workdir) function for the runner"
                )
            out = hook(quick, workdir)
    except Exception as error:  # one broken benchmark must not hide the others' numbers
        return {
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
            "seconds": time.perf_counter() - started,
            "figures": [],
        }
    return {**out, "seconds": time.perf_counter() - started}


def _number(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.3f} {unit}" if unit == "ms" else f"{value:,.0f} {unit}"


def table(report: dict[str, Any]) -> str:
    """The one table: benchmark, figure, value, baseline, ratio."""
    header = f"{'benchmark':<14}{'figure':<52}{'value':>22}{'baseline':>22}{'ratio':>9}"
    lines = [header, "-" * len(header)]
    for name, bench in report["benchmarks"].items():
        if bench.get("error"):
            lines.append(f"{name:<14}FAILED: {bench['error'][:150]}")
        for f in bench["figures"]:
            lines.append(
                f"{name:<14}{f['name'][:51]:<52}{_number(f['value'], f['unit']):>22}"
                f"{_number(f['baseline'], f['unit']):>22}{f['ratio']:>9.3g}"
            )
    return "\n".join(lines)


def run_suite(
    quick: bool, only: list[str] | None = None, results_dir: Path = RESULTS, search_store: Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """Run the benchmarks, write ``<results_dir>/<timestamp>.json`` and return its path and content."""
    names = [n for n in discover() if not only or n in only]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report: dict[str, Any] = {
        "at": stamp,
        "mode": "quick" if quick else "full",
        "machine": machine(),
        "benchmarks": {},
    }
    with tempfile.TemporaryDirectory(prefix="termtem-bench-") as work:
        for name in names:
            print(f"running {name}...", file=sys.stderr, flush=True)
            report["benchmarks"][name] = run_one(name, quick, Path(work), search_store)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{stamp}.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return path, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and short timings: a smoke run")
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all present)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where <timestamp>.json goes")
    parser.add_argument(
        "--search-store",
        type=Path,
        default=None,
        help="SQLite file for the search benchmark's store (built once, reused by later runs)",
    )
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()] or None
    path, report = run_suite(args.quick, only, args.results_dir, args.search_store)
    cores, memory = report["machine"]["cores"], report["machine"]["memory_bytes"] / 2**30
    print(f"Termtem benchmarks, {report['mode']} mode, {report['at']}; {cores} cores, {memory:.1f} GiB")
    print(table(report))
    print(f"written {path}")
    return 1 if any(b.get("error") for b in report["benchmarks"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
