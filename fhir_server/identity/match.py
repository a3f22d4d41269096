"""``Patient/$match``: which children a Patient's details may describe, scored and graded.

Candidates are golden records (one per child) found through the search index (``candidates``) and
scored with Thai-aware comparisons (``scoring``). The answer lists only children the caller may see:
each candidate is read through the caller's own view of the store, so an agency learns nothing about
children it does not serve, and each look-up is in the request's AuditEvent. Data stewards and admins
see every child.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.identity import scoring
from fhir_server.identity.candidates import MATCH_BLOCK_LIMIT, candidate_goldens
from fhir_server.identity.features import features
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError

MATCH_GRADE_EXT = "http://hl7.org/fhir/StructureDefinition/match-grade"
DEFAULT_COUNT = 10
MAX_COUNT = 100
_SHOWN = (scoring.CERTAIN, scoring.PROBABLE, scoring.POSSIBLE)


def _guardians(patient: dict[str, Any]) -> list[dict[str, Any]]:
    """Guardians sent along as contained RelatedPersons."""
    contained = patient.get("contained")
    return [
        c
        for c in (contained if isinstance(contained, list) else [])
        if isinstance(c, dict) and c.get("resourceType") == "RelatedPerson"
    ]


def check_patient(patient: Any) -> dict[str, Any]:
    """The Patient to match, or a 400 saying what is missing."""
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        raise FhirError(
            400,
            "$match needs a Patient in the 'resource' parameter (or as the body)",
            code="required",
            expression=["Parameters.parameter.where(name = 'resource')"],
        )
    if not features(patient, _guardians(patient)).has_matchable():
        raise FhirError(
            400,
            "The Patient has nothing to match on: give a national identifier (CID, G-code, passport),"
            " a name, a birth date or a guardian's CID",
            code="required",
            expression=["Patient"],
        )
    return patient


async def match(
    ctx: RequestContext, patient: dict[str, Any], *, only_certain: bool = False, count: int | None = None
) -> dict[str, Any]:
    """The searchset Bundle of ``$match``: candidates with ``search.score`` and the match grade."""
    patient = check_patient(patient)
    limit = DEFAULT_COUNT if count is None else count
    if limit < 1 or limit > MAX_COUNT:
        raise FhirError(400, f"count must be between 1 and {MAX_COUNT}", expression=["count"])
    wanted = features(patient, _guardians(patient))
    server_store = getattr(ctx.store, "_inner", ctx.store)
    scored = []
    for golden in await candidate_goldens(server_store, wanted, limit=MATCH_BLOCK_LIMIT):
        result = scoring.compare(wanted, features(golden.content))
        if result.grade not in _SHOWN or (only_certain and result.grade != scoring.CERTAIN):
            continue
        scored.append((result, golden))
    scored.sort(key=lambda item: (-item[0].score, item[1].id))
    entries: list[dict[str, Any]] = []
    for result, golden in scored:
        if len(entries) >= limit:
            break
        try:
            stored = await ctx.store.read("Patient", golden.id)  # the caller's view: hidden ones drop out
        except FhirError as error:
            if error.status in (403, 404):
                continue
            raise
        if stored is None or stored.deleted:
            continue
        entries.append(
            {
                "fullUrl": f"{ctx.base_url}/Patient/{golden.id}",
                "resource": orjson.Fragment(stored.body),
                "search": {
                    "extension": [{"url": MATCH_GRADE_EXT, "valueCode": result.grade}],
                    "mode": "match",
                    "score": round(result.score, 4),
                },
            }
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
    if entries:
        bundle["entry"] = entries
    return bundle
