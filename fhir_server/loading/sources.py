"""Turning files into bundles to submit: bundles pass through, NDJSON lines are grouped into batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

# Types that Synthea repeats in every patient bundle; with deduplication their POSTs become
# conditional creates on their first identifier, so each lands once.
DEDUPLICATED_TYPES = ("Organization", "Practitioner", "Location", "PractitionerRole")
NDJSON_BATCH = 500


@dataclass
class Submission:
    """One bundle to submit, and where it came from (for the failure report)."""

    source: str
    bundle: bytes
    entries: int


def files_in(paths: list[Path]) -> list[Path]:
    """Every .json/.ndjson file named or inside a named folder, in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in (".json", ".ndjson") and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return found


def _conditional_creates(bundle: dict[str, Any], types: tuple[str, ...]) -> bool:
    changed = False
    for entry in bundle.get("entry") or []:
        request = entry.get("request") or {}
        resource = entry.get("resource") or {}
        if (
            request.get("method") != "POST"
            or request.get("ifNoneExist")
            or resource.get("resourceType") not in types
        ):
            continue
        identifier = next((i for i in resource.get("identifier") or [] if i.get("value")), None)
        if identifier is None:
            continue
        system = identifier.get("system")
        request["ifNoneExist"] = (
            f"identifier={system}|{identifier['value']}" if system else (f"identifier={identifier['value']}")
        )
        changed = True
    return changed


def _bundle_submission(path: Path, data: bytes, dedupe: tuple[str, ...]) -> Submission:
    bundle = orjson.loads(data)
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValueError(f"{path}: not a Bundle")
    if dedupe and _conditional_creates(bundle, dedupe):
        data = orjson.dumps(bundle)
    return Submission(str(path), data, len(bundle.get("entry") or []))


def _ndjson_submissions(path: Path, dedupe: tuple[str, ...]) -> Iterator[Submission]:
    entries: list[dict[str, Any]] = []
    first_line = 1
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            resource = orjson.loads(line)
            resource_type, id_ = resource.get("resourceType"), resource.get("id")
            request = (
                {"method": "PUT", "url": f"{resource_type}/{id_}"}
                if id_
                else {"method": "POST", "url": resource_type}
            )
            entries.append({"resource": resource, "request": request})
            if len(entries) == NDJSON_BATCH:
                yield _batch(path, first_line, number, entries, dedupe)
                entries, first_line = [], number + 1
    if entries:
        yield _batch(path, first_line, number, entries, dedupe)


def _batch(
    path: Path, first: int, last: int, entries: list[dict[str, Any]], dedupe: tuple[str, ...]
) -> Submission:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    if dedupe:
        _conditional_creates(bundle, dedupe)
    return Submission(f"{path}:{first}-{last}", orjson.dumps(bundle), len(entries))


def submissions(paths: list[Path], dedupe: tuple[str, ...] = ()) -> Iterator[Submission]:
    """Bundles to submit, one file (or NDJSON batch) at a time, so memory stays bounded."""
    for path in files_in(paths):
        if path.suffix == ".ndjson":
            yield from _ndjson_submissions(path, dedupe)
        else:
            yield _bundle_submission(path, path.read_bytes(), dedupe)
