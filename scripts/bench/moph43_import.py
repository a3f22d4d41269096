"""Benchmark: generate a synthetic MOPH 43-file export and measure the mapping (and import) rate.

    python scripts/bench/moph43_import.py --persons 100000            # mapping rate only
    python scripts/bench/moph43_import.py --persons 20000 --store sqlite:///bench.sqlite   # end to end
    python scripts/bench/moph43_import.py --persons 20000 --perinatal   # new tables beside the old ones

Each person gets a PERSON row, an ADDRESS row, and children (60%) get NUTRITION, SPECIALPP and EPI rows;
adults get a CHRONIC row now and then. With ``--perinatal`` a share of the women also have a pregnancy
(PRENATAL, four ANC visits, LABOR, POSTNATAL) and a newborn (its PERSON row, NEWBORN, NEWBORNCARE); the
mapping is then timed without and with those tables, giving the rate of the new tables beside the old
ones. All people are invented: names come from small word lists and CIDs
are random numbers with a correct check digit.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, timedelta
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


_PERINATAL = ("PRENATAL", "ANC", "LABOR", "POSTNATAL", "NEWBORN", "NEWBORNCARE")


def generate(folder: Path, persons: int, seed: int = 43, perinatal: bool = False) -> int:
    """Write PERSON, ADDRESS, NUTRITION, SPECIALPP, EPI and CHRONIC files (and with ``perinatal`` the
    pregnancy and newborn tables); returns the number of rows."""
    rng = random.Random(seed)
    hosp = "99909"
    names = ("PERSON", "ADDRESS", "NUTRITION", "SPECIALPP", "EPI", "CHRONIC")
    names += _PERINATAL if perinatal else ()
    files = {name: (folder / f"{name}.txt").open("w", encoding="utf-8", newline="") for name in names}
    files["PERSON"].write(
        "HOSPCODE|CID|PID|HID|PRENAME|NAME|LNAME|SEX|BIRTH|NATION|RELIGION|MOTHER|TYPEAREA|D_UPDATE\n")
    files["ADDRESS"].write("HOSPCODE|PID|ADDRESSTYPE|HOUSENO|VILLAGE|TAMBON|AMPUR|CHANGWAT\n")
    files["NUTRITION"].write("HOSPCODE|PID|DATE_SERV|NUTRITIONPLACE|WEIGHT|HEIGHT|CHILDDEVELOP\n")
    files["SPECIALPP"].write("HOSPCODE|PID|DATE_SERV|PPSPECIAL|PPSPLACE\n")
    files["EPI"].write("HOSPCODE|PID|DATE_SERV|VACCINETYPE|VACCINEPLACE\n")
    files["CHRONIC"].write("HOSPCODE|PID|DATE_DIAG|CHRONIC|TYPEDISCH\n")
    if perinatal:
        files["PRENATAL"].write("HOSPCODE|PID|GRAVIDA|LMP|EDC|VDRL_RESULT|HB_RESULT|HIV_RESULT|HCT_RESULT|"
                                "THALASSEMIA|D_UPDATE\n")
        files["ANC"].write("HOSPCODE|PID|DATE_SERV|GRAVIDA|ANCNO|GA|ANCRESULT|ANCPLACE\n")
        files["LABOR"].write("HOSPCODE|PID|GRAVIDA|LMP|BDATE|BRESULT|BPLACE|BHOSP|BTYPE|BDOCTOR|LBORN|SBORN\n")
        files["POSTNATAL"].write("HOSPCODE|PID|GRAVIDA|BDATE|PPCARE|PPPLACE|PPRESULT\n")
        files["NEWBORN"].write("HOSPCODE|PID|MPID|GRAVIDA|GA|BDATE|BTIME|BPLACE|BHOSP|BIRTHNO|BTYPE|BDOCTOR|"
                               "BWEIGHT|ASPHYXIA|VITK|TSH|TSHRESULT\n")
        files["NEWBORNCARE"].write("HOSPCODE|PID|BDATE|BCARE|BCPLACE|BCARERESULT|FOOD\n")
    newborn_pid = persons
    rows = 0
    for pid in range(1, persons + 1):
        child = rng.random() < 0.6
        year = rng.randint(2019, 2023) if child else rng.randint(1960, 2000)
        sex = rng.choice("12")
        prename = ("001" if sex == "1" else "002") if child else ("003" if sex == "1" else "005")
        birth = f"{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        mother = _cid(rng) if child else ""
        name = f"{rng.choice(_GIVEN)}|{rng.choice(_FAMILY)}"
        cid = _cid(rng)
        files["PERSON"].write(f"{hosp}|{cid}|{pid}|{pid}|{prename}|{name}|"
                              f"{sex}|{birth}|099|01|{mother}|1|20240110103000\n")
        if perinatal and not child and sex == "2" and year >= 1980 and rng.random() < 0.4:
            newborn_pid += 1
            rows += _pregnancy(files, rng, hosp, pid, cid, newborn_pid)
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


def _pregnancy(files: dict[str, Any], rng: random.Random, hosp: str, pid: int, cid: str, baby: int) -> int:
    """One pregnancy of woman ``pid`` ending in a live birth in 2023 (birth weights about 9% under 2.5 kg)."""
    weeks = rng.choice([35, 36, 37, 38, 38, 39, 39, 39, 40, 40, 41])
    born = date(2023, rng.randint(1, 12), rng.randint(1, 28))
    lmp = born - timedelta(weeks=weeks, days=rng.randint(0, 6))
    fmt = "%Y%m%d"
    grams = max(900, min(5200, round(rng.gauss(3100, 420))))
    files["PRENATAL"].write(f"{hosp}|{pid}|1|{lmp:{fmt}}|{lmp + timedelta(days=280):{fmt}}|1|1|1|"
                            f"{rng.uniform(28, 40):.1f}|1|20240110103000\n")
    for visit, ga in enumerate(sorted(rng.sample(range(8, weeks), 4)), 1):
        on = lmp + timedelta(weeks=ga)
        files["ANC"].write(f"{hosp}|{pid}|{on:{fmt}}|1|{min(5, visit)}|{ga}|1|{hosp}\n")
    files["LABOR"].write(f"{hosp}|{pid}|1|{lmp:{fmt}}|{born:{fmt}}|O800|1|{hosp}|1|2|1|0\n")
    files["POSTNATAL"].write(f"{hosp}|{pid}|1|{born:{fmt}}|{born + timedelta(days=7):{fmt}}|{hosp}|1\n")
    sex = rng.choice("12")
    files["PERSON"].write(f"{hosp}||{baby}|{pid}|{'001' if sex == '1' else '002'}|บุตร|{rng.choice(_FAMILY)}|"
                          f"{sex}|{born:{fmt}}|099|01|{cid}|1|20240110103000\n")
    files["NEWBORN"].write(f"{hosp}|{baby}|{pid}|1|{weeks}|{born:{fmt}}|0{rng.randint(0, 9)}30|1|{hosp}|"
                           "1|1|2|"
                           f"{grams}|2|1|1|{rng.uniform(1, 9):.1f}\n")
    files["NEWBORNCARE"].write(f"{hosp}|{baby}|{born:{fmt}}|{born + timedelta(days=7):{fmt}}|{hosp}|1|1\n")
    return 4 + 4 + 1 + 1 + 1


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


def _map(folder: Path, batch_size: int) -> dict[str, Any]:
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
    return {"records": records, "resources": resources, "bundles": bundles, "errors": counts["errors"],
            "seconds": elapsed, "records_per_s": records / elapsed, "resources_per_s": resources / elapsed}


def run(persons: int = 100_000, batch_size: int = 500, store: str | None = None,
        perinatal: bool = False) -> dict[str, Any]:
    """Generate, map (and with ``store`` import end to end); rates beside the raw parsing limit."""
    result: dict[str, Any] = {"persons": persons, "batch_size": batch_size, "perinatal": perinatal}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "export"
        folder.mkdir()
        started = time.perf_counter()
        result["rows"] = generate(folder, persons, perinatal=perinatal)
        result["generate_seconds"] = time.perf_counter() - started
        parsed, parse_seconds = _raw_parse(folder)
        result["baseline_rows_per_s"] = parsed / parse_seconds

        result["mapping"] = _map(folder, batch_size)
        if perinatal:
            old = Path(tmp) / "old-tables"
            old.mkdir()
            generate(old, persons)  # the same people (same seed) without the new tables
            base = _map(old, batch_size)
            full = result["mapping"]
            extra = full["records"] - base["records"]
            seconds = max(full["seconds"] - base["seconds"], 1e-9)
            result["old_tables"] = base
            result["new_tables"] = {"records": extra, "resources": full["resources"] - base["resources"],
                                    "seconds": seconds, "records_per_s": extra / seconds}

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
    parser.add_argument("--perinatal", action="store_true",
                        help="add pregnancies and newborns; time the new tables beside the old ones")
    args = parser.parse_args()
    result = run(args.persons, args.batch_size, args.store, args.perinatal)
    print(f"generated {args.persons} persons, {result['rows']} rows in {result['generate_seconds']:.1f}s")
    m = result["mapping"]
    print(f"mapping: {m['records']} records -> {m['resources']} resources in {m['bundles']} bundles, "
          f"{m['errors']} errors; {m['seconds']:.1f}s = {m['records_per_s']:,.0f} records/s, "
          f"{m['resources_per_s']:,.0f} resources/s")
    print(f"baseline (raw parsing of the same files): {result['baseline_rows_per_s']:,.0f} rows/s")
    if "new_tables" in result:
        old, new = result["old_tables"], result["new_tables"]
        print(f"old tables alone: {old['records']} records in {old['seconds']:.1f}s = "
              f"{old['records_per_s']:,.0f} records/s; the perinatal tables add {new['records']} records "
              f"({new['resources']} resources) in {new['seconds']:.1f}s = "
              f"{new['records_per_s']:,.0f} records/s")
    if "import" in result:
        i = result["import"]
        rate = f"{i['records_per_s']:,.0f} records/s, {i['resources_per_s']:,.0f} resources/s"
        print(f"end to end (map + validate + write) into {i['store']}: {i['records']} records, "
              f"{i['resources']} resources, {i['rejected']} rejected in {i['seconds']:.1f}s = {rate}")


if __name__ == "__main__":
    main()
