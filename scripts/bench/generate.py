"""Benchmark: the synthetic generator's speed, as FHIR NDJSON and (where the checkout has it) as the
43-file tables, with the perinatal records (pregnancies, births) counted apart.

    python scripts/bench/generate.py --children 2000
    PYTHONPATH=/path/to/other/checkout python scripts/bench/generate.py --children 2000   # before/after

Prints resources/s (and rows/s for the tables) and writes bench-results/generate-*.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

sys.path.append(str(Path(__file__).resolve().parents[2]))  # PYTHONPATH (another checkout) comes first

import fhir_server.synthetic as synthetic
from scripts.bench.common import machine, write_results

_PERINATAL = ("EpisodeOfCare", "Encounter", "Procedure", "MedicationAdministration")


def _parse_and_serialise(folder: Path) -> float:
    """The baseline: resources/s of reading back every written line and writing it out again (orjson)."""
    lines, started = 0, time.perf_counter()
    for path in sorted(folder.glob("*.ndjson")):
        with path.open("rb") as handle:
            for line in handle:
                orjson.dumps(orjson.loads(line))
                lines += 1
    return lines / (time.perf_counter() - started)


def run(children: int, seed: int) -> dict[str, Any]:
    result: dict[str, Any] = {"children": children, "seed": seed, "package": synthetic.__file__}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = synthetic.write_ndjson(Path(tmp) / "ndjson", seed, children)
        seconds = time.perf_counter() - started
        result["baseline_resources_per_s"] = _parse_and_serialise(Path(tmp) / "ndjson")
        counts: Counter[str] = summary.counts
        result["ndjson"] = {
            "resources": summary.resources,
            "seconds": seconds,
            "resources_per_s": summary.resources / seconds,
            "perinatal_resources": sum(counts[k] for k in _PERINATAL),
            "counts": dict(sorted(counts.items())),
        }
        if hasattr(synthetic, "write_moph43"):
            started = time.perf_counter()
            tables = synthetic.write_moph43(Path(tmp) / "moph43", seed, children)
            seconds = time.perf_counter() - started
            result["moph43"] = {
                "rows": tables.resources,
                "seconds": seconds,
                "rows_per_s": tables.resources / seconds,
                "rows_by_table": dict(sorted(tables.counts.items())),
            }
    return result


def suite(quick: bool, workdir: Path) -> dict[str, Any]:
    """For scripts/bench/run_all.py: generation speed beside re-reading and re-writing the same NDJSON."""
    from run_all import figure  # type: ignore[import-not-found]

    result = run(200 if quick else 2000, 1)
    baseline = result["baseline_resources_per_s"]
    figures = [
        figure(
            "synthetic population as FHIR NDJSON (with pregnancies and births)",
            result["ndjson"]["resources_per_s"],
            "resources/s",
            baseline,
            "orjson parse + serialise of the same NDJSON lines",
            higher_is_better=True,
        )
    ]
    if "moph43" in result:
        figures.append(
            figure(
                "synthetic population as 43-file tables",
                result["moph43"]["rows_per_s"],
                "rows/s",
                baseline,
                "orjson parse + serialise of the FHIR form's NDJSON lines",
                higher_is_better=True,
            )
        )
    return {"figures": figures, "details": result}


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--children", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = run(args.children, args.seed)
    n = result["ndjson"]
    print(f"{result['package']}")
    print(f"NDJSON: {args.children} children, {n['resources']} resources ({n['perinatal_resources']} "
          f"perinatal) in {n['seconds']:.1f}s = {n['resources_per_s']:,.0f} resources/s")
    if "moph43" in result:
        m = result["moph43"]
        print(f"43-file tables: {m['rows']} rows in {m['seconds']:.1f}s = {m['rows_per_s']:,.0f} rows/s")
    path = write_results("generate", {"machine": machine(), **result})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
