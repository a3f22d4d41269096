"""Benchmark: generate a synthetic MOPH 43-file export and measure the mapping (and import) rate.

    python scripts/bench/moph43_import.py --persons 100000            # mapping rate only
    python scripts/bench/moph43_import.py --persons 20000 --store sqlite:///bench.sqlite   # end to end

Each person gets a PERSON row, an ADDRESS row, and children (60%) get NUTRITION, SPECIALPP and EPI rows;
adults get a CHRONIC row now and then. All people are invented: names come from small word lists and CIDs
are random numbers with a correct check digit.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fhir_server.mapping import MappedRecord, RowError, batch_records, map_files
from fhir_server.mapping.values import cid_check_digit

_GIVEN = ["กิตติ", "มะลิ", "สมชาย", "สมศรี", "ปิยะ", "ดวงใจ", "ภูมิ", "น้ำฝน", "ธนา", "ใจดี"]
_FAMILY = ["ศรีสุข", "ใจงาม", "มีสุข", "รักไทย", "ทองดี", "ขยันดี"]
_AREAS = [("10", "33", "01"), ("10", "33", "02"), ("10", "01", "01"), ("50", "01", "01")]
_VACCINES = ["010", "041", "D21", "D22", "081", "061", "J11"]


def _cid(rng: random.Random) -> str:
    first = str(rng.choice([1, 1, 1, 2, 3])) + "".join(str(rng.randint(0, 9)) for _ in range(11))
    return first + str(cid_check_digit(first))


def generate(folder: Path, persons: int, seed: int = 43) -> int:
    """Write PERSON, ADDRESS, NUTRITION, SPECIALPP, EPI and CHRONIC files; returns the number of rows."""
    rng = random.Random(seed)
    hosp = "99909"
    files = {name: (folder / f"{name}.txt").open("w", encoding="utf-8", newline="") for name in
             ("PERSON", "ADDRESS", "NUTRITION", "SPECIALPP", "EPI", "CHRONIC")}
    files["PERSON"].write(
        "HOSPCODE|CID|PID|HID|PRENAME|NAME|LNAME|SEX|BIRTH|NATION|RELIGION|MOTHER|TYPEAREA|D_UPDATE\n")
    files["ADDRESS"].write("HOSPCODE|PID|ADDRESSTYPE|HOUSENO|VILLAGE|TAMBON|AMPUR|CHANGWAT\n")
    files["NUTRITION"].write("HOSPCODE|PID|DATE_SERV|NUTRITIONPLACE|WEIGHT|HEIGHT|CHILDDEVELOP\n")
    files["SPECIALPP"].write("HOSPCODE|PID|DATE_SERV|PPSPECIAL|PPSPLACE\n")
    files["EPI"].write("HOSPCODE|PID|DATE_SERV|VACCINETYPE|VACCINEPLACE\n")
    files["CHRONIC"].write("HOSPCODE|PID|DATE_DIAG|CHRONIC|TYPEDISCH\n")
    rows = 0
    for pid in range(1, persons + 1):
        child = rng.random() < 0.6
        year = rng.randint(2019, 2023) if child else rng.randint(1960, 2000)
        sex = rng.choice("12")
        prename = ("001" if sex == "1" else "002") if child else ("003" if sex == "1" else "005")
        birth = f"{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        mother = _cid(rng) if child else ""
        name = f"{rng.choice(_GIVEN)}|{rng.choice(_FAMILY)}"
        files["PERSON"].write(f"{hosp}|{_cid(rng)}|{pid}|{pid}|{prename}|{name}|"
                              f"{sex}|{birth}|099|01|{mother}|1|20240110103000\n")
        cw, am, tb = rng.choice(_AREAS)
        house = f"{rng.randint(1, 300)}/{rng.randint(1, 9)}"
        files["ADDRESS"].write(f"{hosp}|{pid}|1|{house}|00|{tb}|{am}|{cw}\n")
        rows += 2
        if child:
            files["NUTRITION"].write(f"{hosp}|{pid}|2024{rng.randint(1, 3):02d}15|{hosp}|"
                                     f"{rng.uniform(8, 20):.1f}|{rng.uniform(70, 110):.1f}|"
                                     f"{rng.choice('123')}\n")
            files["SPECIALPP"].write(f"{hosp}|{pid}|20240115|1B26{rng.choice('012')}|{hosp}\n")
            for vaccine in rng.sample(_VACCINES, 3):
                files["EPI"].write(f"{hosp}|{pid}|2023{rng.randint(1, 12):02d}10|{vaccine}|{hosp}\n")
            rows += 5
        elif rng.random() < 0.1:
            files["CHRONIC"].write(f"{hosp}|{pid}|20200101|E119|03\n")
            rows += 1
    for handle in files.values():
        handle.close()
    return rows


def _raw_parse(folder: Path) -> tuple[int, float]:
    """The parsing limit: every generated row split into its fields, nothing else (rows, seconds)."""
    rows, started = 0, time.perf_counter()
    for path in sorted(folder.glob("*.txt")):
        with path.open(encoding="utf-8") as handle:
            header = next(handle).rstrip("\n").split("|")
            for line in handle:
                dict(zip(header, line.rstrip("\n").split("|"), strict=False))
                rows += 1
    return rows, time.perf_counter() - started


def run(persons: int = 100_000, batch_size: int = 500, store: str | None = None) -> dict[str, Any]:
    """Generate, map (and with ``store`` import end to end); rates beside the raw parsing limit."""
    result: dict[str, Any] = {"persons": persons, "batch_size": batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        result["rows"] = generate(folder, persons)
        result["generate_seconds"] = time.perf_counter() - started
        parsed, parse_seconds = _raw_parse(folder)
        result["baseline_rows_per_s"] = parsed / parse_seconds

        started = time.perf_counter()
        counts = {"errors": 0}

        def mapped() -> Iterator[MappedRecord]:
            for item in map_files("moph43", [folder]):
                if isinstance(item, RowError):
                    counts["errors"] += 1
                else:
                    yield item

        records = resources = bundles = 0
        for bundle, carried in batch_records(mapped(), batch_size):
            bundles += 1
            records += len(carried)
            resources += len(bundle["entry"])
        elapsed = time.perf_counter() - started
        result["mapping"] = {"records": records, "resources": resources, "bundles": bundles,
                             "errors": counts["errors"], "seconds": elapsed,
                             "records_per_s": records / elapsed, "resources_per_s": resources / elapsed}

        if store:
            from fhir_server.cli.importer import run_import

            started = time.perf_counter()
            imported = run_import("moph43", [folder], store=store, batch_size=batch_size)
            elapsed = time.perf_counter() - started
            result["import"] = {"store": store, "records": imported["records"],
                                "resources": imported["resources"], "rejected": imported["rejected"],
                                "seconds": elapsed,
                                "records_per_s": imported["records"] / elapsed,
                                "resources_per_s": imported["resources"] / elapsed}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--store", help="also import end to end into this store URL (in-process)")
    args = parser.parse_args()
    result = run(args.persons, args.batch_size, args.store)
    print(f"generated {args.persons} persons, {result['rows']} rows in {result['generate_seconds']:.1f}s")
    m = result["mapping"]
    print(f"mapping: {m['records']} records -> {m['resources']} resources in {m['bundles']} bundles, "
          f"{m['errors']} errors; {m['seconds']:.1f}s = {m['records_per_s']:,.0f} records/s, "
          f"{m['resources_per_s']:,.0f} resources/s")
    print(f"baseline (raw parsing of the same files): {result['baseline_rows_per_s']:,.0f} rows/s")
    if "import" in result:
        i = result["import"]
        rate = f"{i['records_per_s']:,.0f} records/s, {i['resources_per_s']:,.0f} resources/s"
        print(f"end to end (map + validate + write) into {i['store']}: {i['records']} records, "
              f"{i['resources']} resources, {i['rejected']} rejected in {i['seconds']:.1f}s = {rate}")


if __name__ == "__main__":
    main()
