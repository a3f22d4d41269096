"""One page of an export turned into NDJSON lines: as stored (plain) or de-identified.

Plain pages never parse a resource (bytes as stored; the children named, for the audit, found by a byte
scan). De-identified pages parse, transform and serialise every resource: the CPU-heavy part of a
research export, so it can run in worker processes (``init_worker``/``deid_in_worker``), leaving the
server's own process, and its event loop, free for interactive requests.
"""

from __future__ import annotations

import re

import orjson

from fhir_server.export.children import PageChildren
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
    children: PageChildren,
    rtype: str,
    page: Page,
    elements: list[str] | None,
) -> Result:
    """``children``: what the page's Patients are (``ChildIndex.for_page``): which records are one
    child, the k-anonymity levels of its children by child key, and its folded Patient records."""
    lines: list[bytes] = []
    skipped = 0
    found: set[str] = set()
    deid.pseudonyms.use(children.same_child)
    levels, merged = children.levels, children.merged
    for id_, body in page:
        if merged and rtype == "Patient" and id_ in merged:
            continue  # one child, one Patient: another agency's record of this child is written
        resource = orjson.loads(body)
        child = child_of(resource)
        if child is None:
            linked = sorted(acc.linked_patients(rtype, resource))
            child = linked[0] if linked else None
        level = levels.get(deid.pseudonyms.key(child), 0) if child is not None and levels else 0
        if level == SUPPRESSED:
            skipped += 1
            continue
        if child is not None:
            found.add(child)
        cleaned = deid.resource(resource, child, level)
        if elements:
            lines.append(shaping.shape(orjson.dumps(cleaned), rtype, None, elements) + b"\n")
        else:
            lines.append(orjson.dumps(cleaned, option=orjson.OPT_APPEND_NEWLINE))
    return lines, skipped, found


# --- worker processes --------------------------------------------------------------------------------

_worker: Deidentifier | None = None


def init_worker(key: bytes) -> None:
    """Process-pool initializer: the export's project key, once per worker (what each page's Patients
    are comes with the page: the worker holds nothing that grows with the export)."""
    global _worker
    _worker = Deidentifier(Pseudonymiser(key))


def deid_in_worker(rtype: str, page: Page, elements: list[str] | None, children: PageChildren) -> Result:
    assert _worker is not None, "init_worker did not run"
    return deidentified(_worker, children, rtype, page, elements)
