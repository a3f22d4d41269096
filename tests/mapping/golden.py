"""Shared helpers: run a format over one sample and give a stable, comparable result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_server.mapping import RowError, map_files, to_transaction_bundles
from fhir_server.mapping.spec import MAPPINGS_DIR

MAPPINGS = MAPPINGS_DIR


def samples() -> list[tuple[str, Path]]:
    """Every (format, sample path) pair shipped under fhir_server/mapping/formats/."""
    found = []
    for folder in sorted(p for p in MAPPINGS.iterdir() if (p / "mapping.json").is_file()):
        for sample in sorted((folder / "samples").iterdir()):
            found.append((folder.name, sample))
    return found


def run(format_name: str, *paths: Path) -> dict[str, Any]:
    """Bundles and errors for ``paths`` (error file names relative to their samples folder)."""
    records, errors = [], []
    for item in map_files(format_name, list(paths)):
        if isinstance(item, RowError):
            errors.append({**item.as_dict(), "file": item.file.replace(str(MAPPINGS) + "/", "")})
        else:
            records.append(item)
            for warning in item.warnings:  # kept values that look wrong: reported beside the errors
                errors.append({**warning.as_dict(), "file": warning.file.replace(str(MAPPINGS) + "/", "")})
    return {"bundles": list(to_transaction_bundles(records, batch_size=1000)), "errors": errors}
