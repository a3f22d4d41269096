"""The linking engine: after a source Patient is written, put it with the right child.

Runs inside the writer's store transaction (REST, bundles, ``termtem import``, ``termtem load`` and the
linking job all come here), so a source record and its link commit together. Rules:

1. A source keeps a manual link (a steward decided) whatever changes.
2. A national identifier (valid CID, G-code, passport) shared with a golden record links the source to
   it automatically (``certain``), whichever agency wrote first, unless the two records carry different
   valid CIDs, or a steward recorded "not the same child". When the identifiers point at several
   children, the strongest kind wins (CID, then passport, then G-code) and the others are queued as
   probable duplicates.
3. Otherwise the source keeps its golden record, or gets a new one; a new one is scored against the
   children it could be (``candidates``) and probable matches are queued for review, never linked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_server.identity import identifiers as ids
from fhir_server.identity import records, scoring
from fhir_server.identity.candidates import candidate_goldens, candidate_searches, candidates_found
from fhir_server.identity.features import Features, features
from fhir_server.identity.model import AUTOMATIC, CERTAIN, MANUAL, Candidate, Link, is_golden
from fhir_server.identity.records import PATIENT, Golden
from fhir_server.storage.base import StoredResource

QUEUED_GRADES = (scoring.PROBABLE,)


@dataclass
class LinkReport:
    """What one linking pass did (for audit descriptions, the job and the CLI)."""

    linked: list[tuple[str, str, str]] = field(default_factory=list)  # source, golden, rule
    created: list[str] = field(default_factory=list)  # new golden ids
    queued: list[tuple[str, str]] = field(default_factory=list)  # golden, candidate golden
    written: list[Any] = field(default_factory=list)  # StoredResource versions of golden records

    def describe(self) -> str:
        parts = [f"Patient/{s} linked to golden Patient/{g} ({r})" for s, g, r in self.linked]
        parts += [f"golden Patient/{g} and Patient/{c} queued for review" for g, c in self.queued]
        return "; ".join(parts)


def _now() -> str:
    from fhir_server.interactions import writes

    return writes.now_instant()


def _golden_ids(golden: Golden, besides: str | None = None) -> set[ids.NationalId]:
    """National identifiers a golden record holds from sources other than ``besides``."""
    out: set[ids.NationalId] = set()
    for identifier in golden.content.get("identifier", []) or []:
        nid, _ = ids.classify(identifier)
        if nid is None:
            continue
        given_by = {
            (e.get("valueReference") or {}).get("reference") for e in identifier.get("extension", []) or []
        }
        if besides is None or given_by - {f"Patient/{besides}"}:
            out.add(nid)
    return out


def _golden_cids(golden: Golden, besides: str | None = None) -> set[str]:
    return {n.value for n in _golden_ids(golden, besides) if n.kind == ids.CID}


def _shared_kind(f: Features, golden: Golden, besides: str | None = None) -> str | None:
    shared = sorted(set(f.national) & _golden_ids(golden, besides), key=lambda n: ids.STRENGTH[n.kind])
    return shared[0].kind if shared else None


def _blocked(current: Golden | None, other: Golden) -> bool:
    if current is None:
        return False
    return other.id in current.state.not_match or current.id in other.state.not_match


async def _save(tx: Any, golden: Golden, report: LinkReport, known: Any = None) -> None:
    written = await records.save(tx, golden, known)
    if written is not None:
        report.written.append(written)


async def _queue_probable(
    tx: Any,
    golden: Golden,
    f: Features,
    report: LinkReport,
    found: dict[str, list[StoredResource]] | None = None,
) -> None:
    """Score a new golden record's source against the children it could be; queue probable matches.

    ``found``: the answers to ``candidate_searches``, when they were looked up already."""
    when = _now()
    others = (
        await candidate_goldens(tx, f, exclude={golden.id})
        if found is None
        else await candidates_found(tx, found, exclude={golden.id})
    )
    for other in others:
        if _blocked(golden, other):
            continue
        match = scoring.compare(f, features(other.content))
        if match.grade in QUEUED_GRADES:
            golden.state.add_candidate(
                Candidate(other.id, match.score, match.grade, tuple(match.reasons), when)
            )
            report.queued.append((golden.id, other.id))


async def link_source(
    tx: Any, source_id: str, report: LinkReport | None = None, *, created_here: bool = False
) -> LinkReport:
    """Bring the links of one source Patient up to date (``tx`` is the server's own transaction).

    ``created_here``: the record was created in ``tx`` itself, so no golden record can link it yet.
    """
    report = report or LinkReport()
    guardians: list[tuple[str, dict[str, Any]]] | None = None
    if created_here:  # the record and its guardians in one trip (no golden record links it yet)
        (stored,), (found_guardians,) = await records.look_up(
            tx, [records.guardians_search(source_id)], reads=[(PATIENT, source_id)]
        )
        guardians, current = records.guardians_found(found_guardians), None
    else:
        stored = await tx.read(PATIENT, source_id)
        current = await records.golden_of(tx, source_id)
    if stored is None or stored.deleted:
        if current is not None:
            current.state.without(source_id)
            await _save(tx, current, report)
        return report
    resource = orjson.loads(stored.body)
    if is_golden(resource):
        return report
    if guardians is None:
        guardians = await records.guardians_of(tx, source_id)
    known = {source_id: (resource, guardians)}
    f = features(resource, [g for _, g in guardians])
    tokens = [n.token for n in f.national]
    candidates: dict[str, list[StoredResource]] | None = None
    if created_here and f.has_matchable():
        # A new child: the golden records sharing its identifiers and the ones it could be, in one
        # trip (the second are scored only if it links to none of the first).
        searches = candidate_searches(f)
        wanted = ([records.goldens_with_search(tokens)] if tokens else []) + [s for _, s in searches]
        _, pages = await records.look_up(tx, wanted)
        with_tokens = await records.goldens_with_found(tx, pages.pop(0)) if tokens else []
        candidates = {kind: page for (kind, _), page in zip(searches, pages, strict=True)}
    else:
        with_tokens = await records.goldens_with(tx, tokens)
    options: list[tuple[int, int, Golden, str]] = []
    for other in with_tokens:
        if current is not None and other.id == current.id:
            continue
        kind = _shared_kind(f, other)
        theirs = _golden_cids(other)
        if kind is None or _blocked(current, other) or (f.cids and theirs and not f.cids & theirs):
            continue
        options.append((ids.STRENGTH[kind], -len(other.state.links), other, kind))
    options.sort(key=lambda o: (o[0], o[1], o[2].id))

    if current is not None:
        link = current.state.link_of(source_id)
        manual = link is not None and link.method == MANUAL
        theirs = _golden_cids(current, besides=source_id)
        conflict = bool(f.cids and theirs and not f.cids & theirs)
        shares = _shared_kind(f, current, besides=source_id) is not None
        if manual or (not conflict and (shares or not options)):
            if not manual:
                for _, _, other, kind in options:
                    current.state.add_candidate(
                        Candidate(other.id, 1.0, scoring.PROBABLE, (f"same {kind}",), _now())
                    )
                    report.queued.append((current.id, other.id))
            await _save(tx, current, report, known)
            return report
        current.state.without(source_id)

    if options:
        _, _, target, kind = options[0]
        target.state.with_link(Link(source_id, CERTAIN, AUTOMATIC, kind, _now()))
        report.linked.append((source_id, target.id, kind))
        for _, _, other, other_kind in options[1:]:
            target.state.add_candidate(
                Candidate(other.id, 1.0, scoring.PROBABLE, (f"same {other_kind}",), _now())
            )
            report.queued.append((target.id, other.id))
        if current is not None:
            if not current.state.links:
                current.state.replaced_by = target.id
                target.state.replaces.append(current.id)
            else:
                target.state.add_candidate(
                    Candidate(current.id, 0.9, scoring.PROBABLE, ("a source moved between them",), _now())
                )
            await _save(tx, current, report, known)
        await _save(tx, target, report, known)
        return report

    if current is not None:  # its identifiers now contradict its child's: it becomes a child of its own
        await _save(tx, current, report, known)
    from fhir_server.interactions import writes

    golden = Golden.new(writes.new_id())
    golden.state.links.append(Link(source_id, CERTAIN, AUTOMATIC, "new-record", _now()))
    if current is not None:
        golden.state.add_candidate(
            Candidate(current.id, 0.5, scoring.POSSIBLE, ("split off: citizen IDs differ",), _now())
        )
    report.created.append(golden.id)
    report.linked.append((source_id, golden.id, "new-record"))
    if f.has_matchable():
        await _queue_probable(tx, golden, f, report, candidates)
    await _save(tx, golden, report, known)
    return report
