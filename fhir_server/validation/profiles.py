"""Our shipped conformance resources: Thai profiles and extensions (with generated snapshots) and
their SearchParameters.

The files in ``profiles_generated/`` are written by ``scripts/generate_snapshots.py`` from the
hand-authored differentials in the repository's ``profiles/`` folder; they are what the server loads,
serves as resources and validates against.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path
from typing import Any

import orjson

GENERATED = Path(__file__).resolve().parent / "profiles_generated"

_lock = threading.Lock()
_registered = False


@cache
def _load() -> tuple[dict[str, Any], ...]:
    if not GENERATED.is_dir():
        return ()
    return tuple(orjson.loads(p.read_bytes()) for p in sorted(GENERATED.glob("*.json")))


def shipped_profiles() -> list[dict[str, Any]]:
    """Every StructureDefinition (differential + snapshot) and SearchParameter we publish."""
    return list(_load())


def structure_definitions() -> list[dict[str, Any]]:
    return [r for r in _load() if r.get("resourceType") == "StructureDefinition"]


def search_parameters() -> list[dict[str, Any]]:
    return [r for r in _load() if r.get("resourceType") == "SearchParameter"]


@cache
def _by_url() -> dict[str, dict[str, Any]]:
    return {r["url"]: r for r in _load() if "url" in r}


def profile(url: str) -> dict[str, Any] | None:
    """One of our StructureDefinitions (or SearchParameters) by canonical URL."""
    return _by_url().get(url.split("|", 1)[0])


def supported_profiles() -> dict[str, list[str]]:
    """Resource type -> URLs of our profiles on it (CapabilityStatement ``supportedProfile``)."""
    out: dict[str, list[str]] = {}
    for sd in structure_definitions():
        if sd.get("kind") == "resource" and sd.get("derivation") == "constraint":
            out.setdefault(sd["type"], []).append(sd["url"])
    return out


def ensure_registered() -> None:
    """Compile our StructureDefinitions into the validator's model (once per process)."""
    global _registered
    if _registered:
        return
    with _lock:
        if _registered:
            return
        from fhir_server.validation.model import register

        for sd in structure_definitions():
            register(sd)
        _registered = True
