"""Which golden records are worth scoring against a Patient (blocking), found through the search index.

Comparing a record with every child is too slow at a million resources, so candidates come from a
few indexed lookups: the record's national identifiers and the valid CIDs one typing slip away from a
CID whose check digit fails; its birth date as written, with day and month swapped, and a year off
(Buddhist-era years are already converted); and the children its guardians' CIDs belong to.
Children born on one day are few (a handful among tens of thousands), so the blocks stay small.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import orjson

from fhir_server import canonical
from fhir_server.identity import identifiers as ids
from fhir_server.identity.features import Features, birth_variants
from fhir_server.identity.records import PATIENT, Golden, golden_tag, goldens_of, search

BLOCK_LIMIT = 200


def near_cids(broken: str) -> list[str]:
    """Valid CIDs one substituted digit or one swap of neighbouring digits away from ``broken``."""
    out: set[str] = set()
    digits = list(broken)
    for i in range(13):
        for d in "0123456789":
            if d != digits[i]:
                candidate = "".join([*digits[:i], d, *digits[i + 1 :]])
                if ids.is_valid_cid(candidate):
                    out.add(candidate)
        if i < 12 and digits[i] != digits[i + 1]:
            swapped = [*digits[:i], digits[i + 1], digits[i], *digits[i + 2 :]]
            candidate = "".join(swapped)
            if ids.is_valid_cid(candidate):
                out.add(candidate)
    return sorted(out)


def _birth_dates(born: date) -> list[date]:
    dates = list(birth_variants(born))
    for years in (-1, 1):
        try:
            dates.append(born.replace(year=born.year + years))
        except ValueError:
            dates.append(born.replace(year=born.year + years, day=28) + timedelta(days=1))
    return list(dict.fromkeys(dates))


async def candidate_goldens(tx: Any, f: Features, *, exclude: set[str] | None = None) -> list[Golden]:
    """Active golden records that may be the same child as ``f`` describes (unscored)."""
    exclude = exclude or set()
    found: dict[str, Golden] = {}

    def keep(goldens: list[Golden]) -> None:
        for golden in goldens:
            if golden.id not in exclude and golden.id not in found:
                found[golden.id] = golden

    tokens = [n.token for n in f.national]
    tokens += [f"{canonical.CID_SYSTEM}|{c}" for b in f.broken_cids for c in near_cids(b)]
    if tokens:
        stored = await search(
            tx, PATIENT, [("identifier", ",".join(tokens)), golden_tag()], count=BLOCK_LIMIT
        )
        keep([Golden.of(s) for s in stored])
    if f.birth is not None:
        dates = ",".join(d.isoformat() for d in _birth_dates(f.birth))
        stored = await search(tx, PATIENT, [("birthdate", dates), golden_tag()], count=BLOCK_LIMIT)
        keep([Golden.of(s) for s in stored])
    if f.guardian_cids:
        values = ",".join(f"{canonical.CID_SYSTEM}|{c}" for c in sorted(f.guardian_cids))
        people = await search(tx, "RelatedPerson", [("identifier", values)], count=BLOCK_LIMIT)
        children = sorted(
            {
                ref.split("/", 1)[1]
                for p in people
                if isinstance(ref := (orjson.loads(p.body).get("patient") or {}).get("reference"), str)
                and ref.startswith("Patient/")
            }
        )
        keep(list((await goldens_of(tx, children)).values()))
    return list(found.values())
