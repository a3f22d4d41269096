"""The OperationDefinitions the server publishes: one for every ``definition`` named in the table.

A definition is found by its canonical URL, first among our own files in ``definitions/`` (one
OperationDefinition per ``OperationDefinition-<id>.json``: our operations, or an implementation guide's
that R4 core lacks), then among HL7's R4 core ones (``fhir_server.definitions``). They are written into
the store at start-up with the other shipped conformance resources (``interactions/startup.py``), so
``OperationDefinition/[id]`` and ``OperationDefinition?url=`` answer for every operation in
``/metadata``.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from fhir_server import definitions

FOLDER = Path(__file__).resolve().parent / "definitions"
log = logging.getLogger("termtem")


@cache
def _ours() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(FOLDER.glob("OperationDefinition-*.json")):
        resource = orjson.loads(path.read_bytes())
        found[resource["url"]] = resource
    return found


def definition_for(url: str) -> dict[str, Any] | None:
    """The OperationDefinition with canonical ``url`` (ours first, then R4 core), or None."""
    return _ours().get(url.split("|", 1)[0]) or definitions.operation_definition(url)


def definition_urls() -> list[str]:
    """Every distinct definition URL the operation table names, in a stable order."""
    from fhir_server.operations.table import OPERATIONS

    return sorted({op.definition for op in OPERATIONS if op.definition})


def operation_definitions() -> list[dict[str, Any]]:
    """The OperationDefinition of every operation in the table (a missing one is logged and left out)."""
    out = []
    for url in definition_urls():
        resource = definition_for(url)
        if resource is None:
            log.error("no OperationDefinition for %s: add one to %s", url, FOLDER)
            continue
        out.append(resource)
    return out
