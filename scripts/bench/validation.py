"""Benchmark: resources/s validated by our validator vs. fhir.resources.R4B model construction.

Same inputs for both, one run: a Patient and an Observation from the HL7 R4 examples, a whole Synthea
bundle (all its entries) and a generated Thai household bundle. Prints a table (resources/s by the wall
clock, and CPU microseconds per resource, the steadier figure on a shared machine) and writes
bench-results/validation-<timestamp>.json. Each round of ours starts with an empty memo of sub-walks;
``--no-memo`` walks every element every time.

    python scripts/bench/validation.py [--seconds 3] [--bundle PATH] [--no-memo]
"""

from __future__ import annotations

import argparse
import json
import platform
import tarfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared"

import sys  # noqa: E402

sys.path.insert(0, str(ROOT))

from fhir.resources.R4B import get_fhir_model_class  # noqa: E402

from fhir_server.validation import validator  # noqa: E402
from fhir_server.validation.validator import validate  # noqa: E402


def _example(name: str) -> dict[str, Any]:
    with tarfile.open(SHARED / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz") as tar:
        member = tar.extractfile(f"package/{name}")
        assert member is not None
        return json.load(member)


def _household() -> list[dict[str, Any]]:
    """The entries of a generated Thai household bundle (the second bundle of a 40-child population, as
    `run_all.py --quick` uses): growth Observations under their Thai and vital-signs profiles, mostly."""
    import tempfile

    from fhir_server.synthetic import write_transaction_bundles

    with tempfile.TemporaryDirectory() as folder:
        write_transaction_bundles(Path(folder), 1, 40)
        path = sorted(Path(folder).glob("bundle-*.json"))[1]
        return [e["resource"] for e in json.loads(path.read_text())["entry"]]


def _rate(fn: Callable[[], int], seconds: float) -> tuple[float, float]:
    """(resources per wall-clock second, CPU microseconds per resource). On a shared machine the CPU
    time is the steadier figure: other jobs stretch the wall clock, not the work done."""
    fn()  # warm caches (compiled trees, FHIRPath) before timing
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        count += fn()
    return count / (time.perf_counter() - start), (time.process_time() - cpu) * 1e6 / count


def _ours(resources: list[dict[str, Any]]) -> Callable[[], int]:
    def run() -> int:
        # Each round starts with an empty memo of sub-walks (validator._memoised), as if these resources
        # were new: only repeats within one round (the same category or code in many Observations of a
        # bundle) are answered from it, never the previous round's copy of the same resource.
        validator._MEMO.clear()
        for r in resources:
            validate(r)
        return len(resources)

    return run


def _pydantic(resources: list[dict[str, Any]]) -> Callable[[], int]:
    classes = [get_fhir_model_class(r["resourceType"]) for r in resources]

    def run() -> int:
        for cls, r in zip(classes, resources, strict=True):
            cls.model_validate(r)
        return len(resources)

    return run


def run(seconds: float = 3.0, bundle_path: Path | None = None) -> dict[str, Any]:
    """Rates for four inputs, ours beside fhir.resources.R4B on the same resources."""
    bundle_path = bundle_path or sorted((SHARED / "testdata" / "synthea" / "R4").glob("*.json"))[0]
    bundle = json.loads(bundle_path.read_text())
    household = _household()
    cases = {
        "Patient (Patient-example)": [_example("Patient-example.json")],
        "Observation (Observation-example-f001-glucose)": [_example("Observation-f001.json")],
        f"Bundle entries ({bundle_path.name}, {len(bundle['entry'])} resources)": [
            e["resource"] for e in bundle["entry"]
        ],
        f"Generated household bundle ({len(household)} resources)": household,
    }
    rows = []
    for name, resources in cases.items():
        ours, ours_cpu = _rate(_ours(resources), seconds)
        theirs, theirs_cpu = _rate(_pydantic(resources), seconds)
        rows.append(
            {
                "input": name,
                "ours_per_s": round(ours, 1),
                "r4b_pydantic_per_s": round(theirs, 1),
                "ratio": round(ours / theirs, 2),
                "ours_cpu_us": round(ours_cpu, 1),
                "r4b_pydantic_cpu_us": round(theirs_cpu, 1),
                "cpu_ratio": round(theirs_cpu / ours_cpu, 2),
            }
        )
    return {
        "benchmark": "validation",
        "python": platform.python_version(),
        "bundle": bundle_path.name,
        "seconds_per_case": seconds,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument(
        "--no-memo", action="store_true", help="walk every element every time (validator.memo_enabled off)"
    )
    args = parser.parse_args()
    validator.memo_enabled = not args.no_memo
    result = run(args.seconds, args.bundle)
    result["memo"] = validator.memo_enabled
    rows = result["rows"]
    print(f"{'input':60} {'ours/s':>10} {'R4B/s':>10} {'ratio':>7} {'ours µs':>9} {'R4B µs':>9} {'ratio':>7}")
    for r in rows:
        print(
            f"{r['input']:60} {r['ours_per_s']:>10} {r['r4b_pydantic_per_s']:>10} {r['ratio']:>7}"
            f" {r['ours_cpu_us']:>9} {r['r4b_pydantic_cpu_us']:>9} {r['cpu_ratio']:>7}"
        )
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out_dir / f"validation-{stamp}.json"
    out.write_text(json.dumps({"when": stamp, **result}, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
