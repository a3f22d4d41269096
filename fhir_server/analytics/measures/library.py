"""The Measures this release ships (``measures/data/*.json``), stored as ordinary Measure resources."""

from __future__ import annotations

from functools import cache
from importlib import resources as package_files
from typing import Any

import orjson


@cache
def shipped_measures() -> tuple[dict[str, Any], ...]:
    folder = package_files.files("fhir_server.analytics.measures") / "data"
    return tuple(
        orjson.loads(entry.read_bytes())
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    )
