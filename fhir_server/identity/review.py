"""The review queue's store: probable matches of each golden record, kept out of its body.

A golden record is read by every look-up that scores a new child and by every agency serving the
child, so it carries identity only. Its probable matches (other golden ids, scores, reasons) live in
the store's key/value area (namespace ``identity-review``, one entry per golden record), written in the
same store transaction as the golden record (``StoreTransaction.kv_put``), so the queue and the links
never disagree. The golden record keeps only the ``review`` tag while it has open items. Each golden
record keeps its best ``MAX_CANDIDATES`` items, so neither its entry nor the work of writing it grows
with the number of look-alike children.

Stores written before this module kept the items as ``th-identity-candidate`` extensions in the golden
record; those are still read (``GoldenState.read``) and move here on the record's next write.
"""

from __future__ import annotations

from typing import Any

from fhir_server.identity.model import Candidate, GoldenState

NAMESPACE = "identity-review"
MAX_CANDIDATES = 20


def to_record(state: GoldenState) -> dict[str, Any] | None:
    """The entry stored for ``state`` (None: nothing to keep)."""
    if not state.candidates:
        return None
    return {
        "retired": state.retired,
        "candidates": [
            {"other": c.other, "score": round(c.score, 4), "grade": c.grade, "reasons": list(c.reasons),
             "when": c.when}
            for c in state.candidates
        ],
    }


def from_record(record: dict[str, Any] | None) -> list[Candidate]:
    out = []
    for item in (record or {}).get("candidates", []):
        if isinstance(item, dict) and isinstance(item.get("other"), str):
            out.append(
                Candidate(
                    item["other"],
                    float(item.get("score", 0.0)),
                    str(item.get("grade", "possible")),
                    tuple(str(r) for r in item.get("reasons", [])),
                    str(item.get("when", "")),
                )
            )
    return out


async def read(reader: Any, golden_id: str) -> list[Candidate]:
    """The stored items of one golden record (``reader``: a store or a transaction)."""
    return from_record(await reader.kv_get(NAMESPACE, golden_id))


async def entries(store: Any) -> list[tuple[str, list[Candidate]]]:
    """Every active golden record with open items, and its items."""
    return [
        (golden_id, from_record(record))
        for golden_id, record in await store.kv_list(NAMESPACE)
        if not record.get("retired")
    ]


def keep_best(candidates: list[Candidate]) -> list[Candidate]:
    """At most ``MAX_CANDIDATES`` items, the highest scores first among equals kept in order."""
    if len(candidates) <= MAX_CANDIDATES:
        return candidates
    best = sorted(candidates, key=lambda c: -c.score)[:MAX_CANDIDATES]
    chosen = {c.other for c in best}
    return [c for c in candidates if c.other in chosen]
