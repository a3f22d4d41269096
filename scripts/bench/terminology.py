"""Benchmark the terminology service over the ~7,436 Thai subdistricts (in-process, no HTTP).

Measures ``$validate-code`` (random subdistrict codes against the subdistrict value set, half with a
display to check) and ``$expand`` with a text ``filter`` (Thai and English fragments of real names),
prints p50/p99 and writes JSON to ``bench-results/terminology-<timestamp>.json``.

    python scripts/bench/terminology.py [--rounds 2000] [--seed 1]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geothai
import orjson

from fhir_server import canonical
from fhir_server.terminology import expand, expand_codes, validate_code

_REPO = Path(__file__).resolve().parents[2]
_SYSTEM = canonical.code_system(canonical.CS_ADMIN_AREA)
_VALUE_SET = canonical.value_set(canonical.VS_ADMIN_AREA_SUBDISTRICT)


def _subdistricts() -> list[Any]:
    return [
        s
        for p in geothai.provinces()
        for d in geothai.districts(p.code)
        for s in geothai.subdistricts(d.code)
    ]


def _timed(fn: Callable[[], Any], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 4),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 4),
        "max_ms": round(ordered[-1], 4),
        "mean_ms": round(statistics.fmean(ordered), 4),
    }


def run(rounds: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    subs = _subdistricts()
    start = time.perf_counter()
    size = len(expand_codes(_VALUE_SET))
    cold_ms = (time.perf_counter() - start) * 1000

    def validate() -> None:
        s = rng.choice(subs)
        display = s.name_th if rng.random() < 0.5 else None
        validate_code(_VALUE_SET, code=s.code, system=_SYSTEM, display=display)

    def validate_unknown() -> None:
        validate_code(_VALUE_SET, code=f"99{rng.randrange(10_000):04d}", system=_SYSTEM)

    def filter_thai() -> None:
        s = rng.choice(subs)
        expand(_VALUE_SET, filter=s.name_th[:3], count=20)

    def filter_english() -> None:
        s = rng.choice(subs)
        expand(_VALUE_SET, filter=s.name_en.split()[0][:5], count=20)

    # Baselines in the same run: the raw work without the service around it (a dict lookup for a code,
    # a substring scan over the same names for a filter, first 20 kept).
    names = {s.code: s.name_th for s in subs}
    rows = [(s.code, s.name_th, s.name_en.lower()) for s in subs]

    def raw_lookup() -> None:
        s = rng.choice(subs)
        names.get(s.code)

    def raw_scan(fragment: str, column: int) -> None:
        found = []
        for row in rows:
            if fragment in row[column]:
                found.append(row)
                if len(found) == 20:
                    break

    def raw_thai() -> None:
        raw_scan(rng.choice(subs).name_th[:3], 1)

    def raw_english() -> None:
        raw_scan(rng.choice(subs).name_en.split()[0][:5].lower(), 2)

    results = {
        "validate_code": _summary(_timed(validate, rounds)),
        "validate_code_unknown": _summary(_timed(validate_unknown, rounds)),
        "expand_filter_thai": _summary(_timed(filter_thai, rounds)),
        "expand_filter_english": _summary(_timed(filter_english, rounds)),
    }
    return {
        "benchmark": "terminology",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "subdistricts": size,
        "rounds": rounds,
        "cold_expansion_ms": round(cold_ms, 1),
        "results": results,
        "baselines": {
            "dict_lookup": _summary(_timed(raw_lookup, rounds)),
            "substring_scan_thai": _summary(_timed(raw_thai, rounds)),
            "substring_scan_english": _summary(_timed(raw_english, rounds)),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    report = run(args.rounds, args.seed)
    print(f"subdistricts: {report['subdistricts']}; first expansion {report['cold_expansion_ms']} ms")
    for name, r in report["results"].items():
        print(f"{name:24} p50 {r['p50_ms']:8.3f} ms   p99 {r['p99_ms']:8.3f} ms   (n={r['n']})")
    for name, r in report["baselines"].items():
        print(f"baseline {name:15} p50 {r['p50_ms']:8.3f} ms   p99 {r['p99_ms']:8.3f} ms   (n={r['n']})")
    out_dir = _REPO / "bench-results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"terminology-{stamp}.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"wrote {path.relative_to(_REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
