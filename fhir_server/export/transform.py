"""One page of an export turned into NDJSON lines: as stored (plain) or de-identified.

Plain pages never parse a resource (bytes as stored; the children named, for the audit, found by a byte
scan). De-identified pages parse, transform and serialise every resource: the CPU-heavy part of a
research export, so it can run in worker processes (``init_worker``/``deid_in_worker``), leaving the
server's own process, and its event loop, free for interactive requests.
"""

from __future__ import annotations

import re

import orjson

from fhir_server.export.deid import SUPPRESSED, Deidentifier, child_of
from fhir_server.export.pseudonyms import Pseudonymiser
from fhir_server.interactions import shaping
from fhir_server.security import access as acc

Page = list[tuple[str, bytes]]  # (id, body) of each resource, in storage order
Result = tuple[list[bytes], int, set[str]]  # lines, resources left out, children whose data it is

# The children a resource refers to, for the audit (a byte scan: no parse on the plain hot path).
_PATIENT_REFERENCE = re.compile(rb'Patient/([A-Za-z0-9\-.]{1,64})(?=["/])')


def plain(rtype: str, page: Page, elements: list[str] | None, audit: bool) -> Result:
    lines: list[bytes] = []
    children: set[str] = set()
    for id_, body in page:
        if audit:
            if rtype == "Patient":
                children.add(id_)
            else:
                children.update(m.decode() for m in _PATIENT_REFERENCE.findall(body))
        if elements:
            body = shaping.shape(body, rtype, None, elements)
        elif b"\n" in body or b"\r" in body:
            body = body.replace(b"\n", b"").replace(b"\r", b"")  # whitespace only: strings escape them
        lines.append(body + b"\n")
    return lines, 0, children


def deidentified(
    deid: Deidentifier,
    levels: dict[str, int],
    rtype: str,
    page: Page,
    elements: list[str] | None,
    merged: frozenset[str] = frozenset(),
) -> Result:
    """``levels``: k-anonymity decisions by child key (``Pseudonymiser.key``); ``merged``: source
    Patient records of a child whose Patient another record of the same child stands for."""
    lines: list[bytes] = []
    skipped = 0
    children: set[str] = set()
    for id_, body in page:
        if merged and rtype == "Patient" and id_ in merged:
            continue  # one child, one Patient: another agency's record of this child is written
        resource = orjson.loads(body)
        child = child_of(resource)
        if child is None:
            linked = sorted(acc.linked_patients(rtype, resource))
            child = linked[0] if linked else None
        level = levels.get(deid.pseudonyms.key(child), 0) if child is not None else 0
        if level == SUPPRESSED:
            skipped += 1
            continue
        if child is not None:
            children.add(child)
        cleaned = deid.resource(resource, child, level)
        if elements:
            lines.append(shaping.shape(orjson.dumps(cleaned), rtype, None, elements) + b"\n")
        else:
            lines.append(orjson.dumps(cleaned, option=orjson.OPT_APPEND_NEWLINE))
    return lines, skipped, children


# --- worker processes --------------------------------------------------------------------------------

_worker: tuple[Deidentifier, dict[str, int], frozenset[str]] | None = None


def init_worker(
    key: bytes, same_child: dict[str, str] | None, levels: dict[str, int], merged: frozenset[str]
) -> None:
    """Process-pool initializer: the export's project key, which records are one child, and the
    k-anonymity decisions, once per worker."""
    global _worker
    _worker = (Deidentifier(Pseudonymiser(key, same_child)), levels, merged)


def deid_in_worker(rtype: str, page: Page, elements: list[str] | None) -> Result:
    assert _worker is not None, "init_worker did not run"
    return deidentified(_worker[0], _worker[1], rtype, page, elements, _worker[2])
