"""Write a generated population to disk as FHIR transaction bundles, as NDJSON or as the MOPH 43-file
tables, streaming."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

import orjson

from fhir_server.synthetic import tables
from fhir_server.synthetic.config import PopulationConfig
from fhir_server.synthetic.population import Household, households

Progress = Callable[[int, int], None]  # (resources so far, children so far)


@dataclass(slots=True)
class Summary:
    """What was written: resources per type (rows per table for the 43-file tables), children,
    households and the files."""

    counts: Counter[str] = field(default_factory=Counter)
    children: int = 0
    households: int = 0
    files: list[Path] = field(default_factory=list)

    @property
    def resources(self) -> int:
        return sum(self.counts.values())


def _stream(
    seed: int,
    children: int | None,
    resources: int | None,
    config: PopulationConfig | None,
    reference_date: date | None,
    urn: bool,
    with_rows: bool = False,
) -> Iterator[Household]:
    if children is None and resources is None:
        raise ValueError("give a number of children or a number of resources")
    return households(
        seed,
        children,
        resources=resources,
        config=config,
        reference_date=reference_date,
        urn_references=urn,
        with_rows=with_rows,
    )


def _account(summary: Summary, household: Household, progress: Progress | None, first: bool) -> None:
    for resource in household.resources:
        summary.counts[resource["resourceType"]] += 1
    if not first:
        summary.households += 1
        summary.children += household.children
    if progress is not None:
        progress(summary.resources, summary.children)


def write_ndjson(
    out_dir: Path,
    seed: int,
    children: int | None = None,
    *,
    resources: int | None = None,
    config: PopulationConfig | None = None,
    reference_date: date | None = None,
    progress: Progress | None = None,
) -> Summary:
    """One ``<ResourceType>.ndjson`` file per type (Bulk Data style); references are ``Type/id``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    files: dict[str, IO[bytes]] = {}
    try:
        for number, household in enumerate(
            _stream(seed, children, resources, config, reference_date, urn=False)
        ):
            for resource in household.resources:
                kind = resource["resourceType"]
                handle = files.get(kind)
                if handle is None:
                    path = out_dir / f"{kind}.ndjson"
                    handle = files[kind] = path.open("wb")
                    summary.files.append(path)
                handle.write(orjson.dumps(resource))
                handle.write(b"\n")
            _account(summary, household, progress, first=number == 0)
    finally:
        for handle in files.values():
            handle.close()
    summary.files.sort()
    return summary


def write_transaction_bundles(
    out_dir: Path,
    seed: int,
    children: int | None = None,
    *,
    resources: int | None = None,
    households_per_bundle: int = 10,
    config: PopulationConfig | None = None,
    reference_date: date | None = None,
    progress: Progress | None = None,
) -> Summary:
    """``bundle-000000.json`` holds the agencies (PUT on their ids, so every later reference resolves);
    then one transaction per ``households_per_bundle`` households, entries POSTed with urn:uuid fullUrls.
    Load the files in name order."""
    if households_per_bundle < 1:
        raise ValueError("households_per_bundle must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        path = out_dir / f"bundle-{len(summary.files):06d}.json"
        path.write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": pending}))
        summary.files.append(path)
        pending.clear()

    batches = 0
    for number, household in enumerate(_stream(seed, children, resources, config, reference_date, urn=True)):
        if number == 0:
            pending.extend(
                {"resource": r, "request": {"method": "PUT", "url": f"Organization/{r['id']}"}}
                for r in household.resources
            )
            _account(summary, household, progress, first=True)
            flush()
            continue
        for resource in household.resources:
            id_ = resource.pop("id")
            pending.append(
                {
                    "fullUrl": f"urn:uuid:{id_}",
                    "resource": resource,
                    "request": {"method": "POST", "url": resource["resourceType"]},
                }
            )
        _account(summary, household, progress, first=False)
        batches += 1
        if batches == households_per_bundle:
            flush()
            batches = 0
    if pending:
        flush()
    return summary


def write_moph43(
    out_dir: Path,
    seed: int,
    children: int | None = None,
    *,
    resources: int | None = None,
    config: PopulationConfig | None = None,
    reference_date: date | None = None,
    progress: Progress | None = None,
) -> Summary:
    """The population as MOPH 43-file tables (``PERSON.txt``, ``ANC.txt``...: pipe-delimited, UTF-8,
    header row) in one folder holding every health centre's rows (HOSPCODE tells them apart), as
    ``termtem import --format moph43`` reads them. ``Summary.counts`` counts rows per table; the size
    (``children``/``resources``) is that of the FHIR form, so both forms hold the same population."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    rows: Counter[str] = Counter()
    files: dict[str, IO[str]] = {}
    try:
        for table in tables.TABLES:
            path = out_dir / f"{table}.txt"
            files[table] = path.open("w", encoding="utf-8", newline="")
            files[table].write("|".join(tables.columns(table)) + "\n")
            summary.files.append(path)
        for number, household in enumerate(
            _stream(seed, children, resources, config, reference_date, urn=False, with_rows=True)
        ):
            for table, found in household.rows.items():
                handle = files[table]
                for row in found:
                    handle.write(tables.line(table, row))
                rows[table] += len(found)
            _account(summary, household, progress, first=number == 0)
    finally:
        for handle in files.values():
            handle.close()
    summary.counts = rows
    summary.files.sort()
    return summary
