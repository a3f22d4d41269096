"""Golden tests: every shipped sample maps exactly to its expected FHIR output (and error report)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.mapping.golden import MAPPINGS, run, samples


@pytest.mark.parametrize(("format_name", "sample"), samples(), ids=lambda v: getattr(v, "name", v))
def test_sample_maps_to_expected_output(format_name: str, sample: Path) -> None:
    expected = orjson.loads((MAPPINGS / format_name / "expected" / f"{sample.name}.json").read_bytes())
    assert run(format_name, sample) == expected


def test_every_format_has_samples_readme_schema_and_expected_output() -> None:
    formats = {f for f, _ in samples()}
    assert formats == {"moph43", "bma-childcare-dspm", "bma-school-health", "msdhs-case"}
    for name in formats:
        folder = MAPPINGS / name
        for needed in ("README.md", "schema.json", "mapping.json"):
            assert (folder / needed).is_file(), f"{name}/{needed}"


def test_csv_xlsx_and_tis620_versions_of_one_sheet_map_alike() -> None:
    folder = MAPPINGS / "bma-childcare-dspm" / "samples"
    bom = run("bma-childcare-dspm", folder / "dspm-2567-utf8-bom.csv")["bundles"]
    xlsx = run("bma-childcare-dspm", folder / "dspm-2567.xlsx")["bundles"]
    tis = run("bma-childcare-dspm", folder / "dspm-2567-tis620.csv")["bundles"]
    assert bom == xlsx
    assert tis[0]["entry"] == bom[0]["entry"][: len(tis[0]["entry"])]


def test_mapped_samples_conform_to_the_thai_profiles() -> None:
    from fhir_server.cli.importer import profile_validator, validate_record
    from fhir_server.mapping import RowError, map_files

    check = profile_validator()
    assert check is not None
    for format_name, sample in samples():
        if "error" in sample.name:
            continue
        for item in map_files(format_name, [sample]):
            assert not isinstance(item, RowError), item
            assert validate_record(item, check) == [], (sample.name, item.row)
