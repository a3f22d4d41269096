"""Which golden records are worth scoring against a Patient (blocking), found through the search index.

Comparing a record with every child is too slow at a million resources, so candidates come from a
few indexed look-ups, each returning at most ``BLOCK_LIMIT`` golden records: the record's national
identifiers and the valid CIDs one typing slip away from a CID whose check digit fails; its blocking
keys (birth date with the usual slips, sex and name keys: ``blocking``), carried by golden records as
tags; and the children its guardians' CIDs belong to. The work of one look-up is therefore bounded
whatever the store holds, even when many look-alike children share a block (the same child posted again
and again): a block holds the oldest ``BLOCK_LIMIT`` of them, which is enough for a steward to see the
duplicates.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from fhir_server import canonical
from fhir_server.identity import blocking, records
from fhir_server.identity import identifiers as ids
from fhir_server.identity.features import Features
from fhir_server.identity.records import PATIENT, Golden, active_goldens, golden_search_of, goldens_of
from fhir_server.storage.base import StoredResource

BLOCK_LIMIT = 25  # golden records per look-up (write path)
MATCH_BLOCK_LIMIT = 100  # per look-up for $match, which ranks and pages what it finds


def near_cids(broken: str) -> list[str]:
    """Valid CIDs one substituted digit or one swap of neighbouring digits away from ``broken``."""
    return list(_near_cids(broken))


@lru_cache(maxsize=4096)
def _near_cids(broken: str) -> tuple[str, ...]:
    digits = [int(c) for c in broken]
    weighted = sum(d * (13 - i) for i, d in enumerate(digits[:12]))

    def valid(total: int, check: int) -> bool:
        return (11 - total % 11) % 10 == check

    out: set[str] = set()
    for i in range(13):
        for d in range(10):
            if d == digits[i]:
                continue
            changed = weighted if i == 12 else weighted + (d - digits[i]) * (13 - i)
            if valid(changed, d if i == 12 else digits[12]):
                out.add(broken[:i] + str(d) + broken[i + 1 :])
        if i < 12 and digits[i] != digits[i + 1]:
            swapped = broken[:i] + broken[i + 1] + broken[i] + broken[i + 2 :]
            if ids.is_valid_cid(swapped):
                out.add(swapped)
    return tuple(sorted(out))


def candidate_searches(f: Features, limit: int = BLOCK_LIMIT) -> list[tuple[str, records.Search]]:
    """The look-ups behind ``candidate_goldens`` (by what each finds), to run in one trip."""
    out: list[tuple[str, records.Search]] = []
    tokens = [n.token for n in f.national]
    tokens += [f"{canonical.CID_SYSTEM}|{c}" for b in f.broken_cids for c in near_cids(b)]
    if tokens:
        out.append(("identifier", golden_search_of([("identifier", ",".join(tokens))], limit, per_match=5)))
    keys = blocking.query_keys(f)
    if keys:
        values = ",".join(f"{blocking.SYSTEM}|{k}" for k in keys)
        out.append(("blocking", (PATIENT, [("_tag", values)], limit)))
    if f.guardian_cids:
        values = ",".join(f"{canonical.CID_SYSTEM}|{c}" for c in sorted(f.guardian_cids))
        out.append(("guardians", ("RelatedPerson", [("identifier", values)], limit)))
    return out


async def candidates_found(
    tx: Any, found: dict[str, list[StoredResource]], *, exclude: set[str], limit: int = BLOCK_LIMIT
) -> list[Golden]:
    """``candidate_goldens`` from the answers to ``candidate_searches`` (the children of guardians
    found by CID still take a look-up of their own)."""
    kept: dict[str, Golden] = {}

    def keep(goldens: list[Golden]) -> None:
        for golden in goldens:
            if golden.id not in exclude and golden.id not in kept:
                kept[golden.id] = golden

    if "identifier" in found:
        keep([Golden.of(s) for s in active_goldens(found["identifier"], limit)])
    if "blocking" in found:
        keep([g for s in found["blocking"] if (g := Golden.of(s)).content.get("active") is not False])
    if "guardians" in found:
        children = sorted(
            {
                ref.split("/", 1)[1]
                for p in found["guardians"]
                if isinstance(ref := (orjson.loads(p.body).get("patient") or {}).get("reference"), str)
                and ref.startswith("Patient/")
            }
        )
        keep(list((await goldens_of(tx, children)).values()))
    return list(kept.values())


async def candidate_goldens(
    tx: Any, f: Features, *, exclude: set[str] | None = None, limit: int = BLOCK_LIMIT
) -> list[Golden]:
    """Active golden records that may be the same child as ``f`` describes (unscored; their review
    items are not read: these records are for scoring, not for changing)."""
    searches = candidate_searches(f, limit)
    _, pages = await records.look_up(tx, [search for _, search in searches])
    found = {kind: page for (kind, _), page in zip(searches, pages, strict=True)}
    return await candidates_found(tx, found, exclude=exclude or set(), limit=limit)
