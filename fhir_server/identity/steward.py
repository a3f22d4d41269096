"""The data steward's tools: look at links and the review queue, link, unlink, merge, undo a merge.

Plain async functions over the server's own store (the HTTP operations and ``termtem identity`` both
call them); each runs in one store transaction and returns what it changed. Decisions are recorded in
the golden records themselves (manual links, ``not-match``), so automatic linking respects them later.
Merging never loses a source record or a reference: sources move to the surviving golden record, and
the merged one stays readable (inactive, ``replaced-by`` the survivor) until a merge is undone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_server.identity import identifiers as ids
from fhir_server.identity import records, review
from fhir_server.identity.linker import _golden_cids
from fhir_server.identity.model import (
    CERTAIN,
    MANUAL,
    GoldenState,
    Link,
    is_golden,
)
from fhir_server.identity.records import PATIENT, Golden
from fhir_server.interactions import writes
from fhir_server.interactions.errors import FhirError
from fhir_server.storage.base import HistoryQuery, StoredResource


@dataclass
class Change:
    """What a steward operation did: a sentence for people and the golden versions it wrote."""

    summary: str
    goldens: list[str] = field(default_factory=list)
    written: list[StoredResource] = field(default_factory=list)


def _conflict(text: str, expression: str | None = None) -> FhirError:
    return FhirError(409, text, code="conflict", expression=[expression] if expression else None)


def _unknown(text: str, expression: str) -> FhirError:
    return FhirError(404, text, code="not-found", expression=[expression])


async def _source(tx: Any, source_id: str, expression: str) -> dict[str, Any]:
    stored = await tx.read(PATIENT, source_id)
    if stored is None or stored.deleted:
        raise _unknown(f"Patient/{source_id} is not known", expression)
    resource = orjson.loads(stored.body)
    if is_golden(resource):
        raise FhirError(
            422,
            f"Patient/{source_id} is a golden record; name an agency's source record",
            code="business-rule",
            expression=[expression],
        )
    return resource


async def _golden(tx: Any, golden_id: str, expression: str, *, active: bool = True) -> Golden:
    golden = await records.read_golden(tx, golden_id)
    if golden is None:
        raise _unknown(f"Patient/{golden_id} is not a golden record", expression)
    if active and golden.state.retired:
        raise _conflict(
            f"Patient/{golden_id} was merged into Patient/{golden.state.replaced_by}; use that record",
            expression,
        )
    return golden


async def _save_all(tx: Any, change: Change, *goldens: Golden) -> Change:
    for golden in goldens:
        written = await records.save(tx, golden)
        if written is not None:
            change.written.append(written)
        change.goldens.append(golden.id)
    return change


def _now() -> str:
    return writes.now_instant()


def _cid_clash(mine: set[str], theirs: set[str]) -> bool:
    return bool(mine and theirs and not mine & theirs)


async def link(store: Any, source_id: str, golden_id: str, actor: str) -> Change:
    """Link a source record to a child (a manual, certain link); it leaves its current golden record."""
    async with store.transaction() as tx:
        resource = await _source(tx, source_id, "source")
        target = await _golden(tx, golden_id, "target")
        mine = {n.value for n in ids.national_ids(resource) if n.kind == ids.CID}
        if _cid_clash(mine, _golden_cids(target, besides=source_id)):
            raise _conflict(
                f"Patient/{source_id} has citizen ID {', '.join(sorted(mine))} and Patient/{golden_id} has"
                f" {', '.join(sorted(_golden_cids(target, besides=source_id)))}: two different valid CIDs"
                " are two children; correct the record's CID first",
                "source",
            )
        current = await records.golden_of(tx, source_id)
        change = Change(f"Patient/{source_id} linked to Patient/{golden_id} by {actor}")
        target.state.with_link(Link(source_id, CERTAIN, MANUAL, "steward", _now(), actor))
        target.state.not_match.discard(current.id if current else "")
        if current is None or current.id == target.id:
            return await _save_all(tx, change, target)
        current.state.without(source_id)
        current.state.drop_candidate(target.id)
        target.state.drop_candidate(current.id)
        current.state.not_match.discard(target.id)
        if not current.state.links:
            current.state.replaced_by = target.id
            target.state.replaces.append(current.id)
        return await _save_all(tx, change, current, target)


async def unlink(store: Any, source_id: str, actor: str) -> Change:
    """Take a source record out of its child: it becomes a child of its own, and automatic linking will
    not put it back (``not-match`` against the golden record it left)."""
    async with store.transaction() as tx:
        await _source(tx, source_id, "source")
        current = await records.golden_of(tx, source_id)
        if current is None:
            raise _conflict(f"Patient/{source_id} is not linked to a golden record", "source")
        if len(current.state.links) == 1:
            raise _conflict(
                f"Patient/{source_id} is the only record of golden Patient/{current.id}: nothing to unlink",
                "source",
            )
        current.state.without(source_id)
        golden = Golden.new(writes.new_id())
        golden.state.links.append(Link(source_id, CERTAIN, MANUAL, "steward", _now(), actor))
        golden.state.not_match.add(current.id)
        change = Change(
            f"Patient/{source_id} unlinked from Patient/{current.id} by {actor} (new Patient/{golden.id})"
        )
        return await _save_all(tx, change, current, golden)


async def merge(store: Any, from_id: str, into_id: str, actor: str) -> Change:
    """Merge golden record ``from_id`` into ``into_id``: every source moves; ``from_id`` stays readable,
    inactive and ``replaced-by`` the survivor. 409 when they hold different valid CIDs."""
    if from_id == into_id:
        raise FhirError(400, "A golden record cannot be merged into itself", expression=["from"])
    async with store.transaction() as tx:
        source = await _golden(tx, from_id, "from")
        target = await _golden(tx, into_id, "into")
        mine, theirs = _golden_cids(source), _golden_cids(target)
        if _cid_clash(mine, theirs):
            raise _conflict(
                f"Patient/{from_id} has citizen ID {', '.join(sorted(mine))} and Patient/{into_id} has"
                f" {', '.join(sorted(theirs))}: two different valid CIDs are two children, so they are not"
                " merged. If a record carries a wrong CID, have its agency correct it, or unlink that"
                " record first.",
                "from",
            )
        when = _now()
        for old in source.state.links:
            target.state.with_link(Link(old.source, CERTAIN, MANUAL, "merge", when, actor, from_id))
        for candidate in source.state.candidates:
            if candidate.other != into_id:
                target.state.add_candidate(candidate)
        target.state.drop_candidate(from_id)
        target.state.not_match.discard(from_id)
        target.state.replaces = [*[r for r in target.state.replaces if r != from_id], from_id]
        source.state.links = []  # its review items stay stored (not shown while merged) for an undo
        source.state.replaced_by = into_id
        change = Change(f"Patient/{from_id} merged into Patient/{into_id} by {actor}")
        return await _save_all(tx, change, source, target)


async def _before_merge(store: Any, golden_id: str) -> GoldenState | None:
    """The golden record's state just before it was merged away (its newest active version)."""
    before: int | None = None
    while True:
        page = await store.history(
            HistoryQuery(resource_type=PATIENT, id=golden_id, count=50, before_seq=before)
        )
        for stored in page.entries:
            if stored.deleted or not stored.body:
                continue
            state = GoldenState.read(golden_id, orjson.loads(stored.body))
            if not state.retired and state.links:
                return state
        if page.next_before_seq is None:
            return None
        before = page.next_before_seq


async def unmerge(store: Any, golden_id: str, actor: str) -> Change:
    """Undo the merge of ``golden_id``: the sources it had move back (with the links they had), it is
    active again, and both records are marked ``not-match`` so review does not propose them again."""
    previous = await _before_merge(store, golden_id)
    async with store.transaction() as tx:
        retired = await _golden(tx, golden_id, "golden", active=False)
        if not retired.state.retired:
            raise _conflict(f"Patient/{golden_id} is not a merged golden record", "golden")
        survivor = await _golden(tx, retired.state.replaced_by or "", "golden")
        if previous is None:
            raise _conflict(f"No version of Patient/{golden_id} before its merge was found", "golden")
        moved = [x for x in survivor.state.links if x.merged_from == golden_id]
        originals = {x.source: x for x in previous.links}
        for link in moved:
            survivor.state.without(link.source)
            retired.state.with_link(
                originals.get(link.source) or Link(link.source, CERTAIN, MANUAL, "steward", _now(), actor)
            )
        if not retired.state.links:
            raise _conflict(
                f"None of the records merged from Patient/{golden_id} is still with Patient/{survivor.id}",
                "golden",
            )
        retired.state.replaced_by = None
        retired.state.candidates = previous.candidates or retired.state.candidates  # old bodies kept them
        retired.state.not_match = set(previous.not_match) | {survivor.id}
        survivor.state.replaces = [r for r in survivor.state.replaces if r != golden_id]
        change = Change(f"merge of Patient/{golden_id} into Patient/{survivor.id} undone by {actor}")
        return await _save_all(tx, change, retired, survivor)


async def not_match(store: Any, golden_id: str, other_id: str, actor: str) -> Change:
    """A steward's "different children": the review candidate goes, and neither automatic linking nor
    review joins the two again."""
    if golden_id == other_id:
        raise FhirError(400, "A golden record is always the same child as itself", expression=["other"])
    async with store.transaction() as tx:
        first = await _golden(tx, golden_id, "golden")
        second = await _golden(tx, other_id, "other")
        first.state.drop_candidate(other_id)
        second.state.drop_candidate(golden_id)
        first.state.not_match.add(other_id)
        change = Change(f"Patient/{golden_id} and Patient/{other_id} marked as different children by {actor}")
        return await _save_all(tx, change, first, second)


@dataclass(frozen=True)
class ReviewItem:
    golden: str
    other: str
    score: float
    grade: str
    reasons: tuple[str, ...]
    when: str


def _describe(content: dict[str, Any]) -> str:
    from fhir_server.identity.conditional import _name

    nids = ", ".join(f"{n.kind} {n.value}" for n in ids.national_ids(content)) or "no national identifier"
    sources = len(GoldenState.read(str(content.get("id")), content).links)
    return f"{_name(content)}, born {content.get('birthDate', '?')}, {nids}, {sources} record(s)"


async def links_of(store: Any, patient_id: str) -> tuple[Golden, list[ReviewItem]]:
    """The child ``patient_id`` (a source or golden record) belongs to, with its open review items."""
    golden = await records.read_golden(store, patient_id)
    if golden is None:
        await _source(store, patient_id, "patient")
        golden = await records.golden_of(store, patient_id)
    if golden is None:
        raise _unknown(f"Patient/{patient_id} is linked to no golden record yet", "patient")
    items = [
        ReviewItem(golden.id, c.other, c.score, c.grade, c.reasons, c.when) for c in golden.state.candidates
    ]
    return golden, [] if golden.state.retired else items


async def review_queue(store: Any, limit: int = 1000) -> list[ReviewItem]:
    """Probable matches waiting for a decision, best first."""
    items = [
        ReviewItem(golden_id, c.other, c.score, c.grade, c.reasons, c.when)
        for golden_id, candidates in await review.entries(store)
        for c in candidates
    ]
    items.sort(key=lambda i: (-i.score, i.golden, i.other))
    return items[:limit]


async def suspected_duplicates(store: Any, limit: int = 1000) -> list[dict[str, Any]]:
    """The review queue with both children described, for a steward's report."""
    rows = []
    for item in await review_queue(store, limit):
        first = await records.read_golden(store, item.golden)
        second = await records.read_golden(store, item.other)
        if first is None or second is None or second.state.retired:
            continue
        rows.append(
            {
                "golden": item.golden,
                "candidate": item.other,
                "score": round(item.score, 3),
                "grade": item.grade,
                "reasons": list(item.reasons),
                "golden_description": _describe(first.content),
                "candidate_description": _describe(second.content),
                "since": item.when,
            }
        )
    return rows
