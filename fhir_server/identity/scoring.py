"""How alike two children's records are: evidence weights, a score and a FHIR match grade.

Each field adds evidence for (positive) or against (negative) "same child", in the manner of
Fellegi-Sunter record linkage; the sum becomes a 0..1 score through a logistic curve. National
identifiers decide outright: a shared CID, G-code or passport is ``certain``, two different valid
CIDs are ``certainly-not``. Twins share a birth date, guardians, family name and address, so a
different given name counts heavily against a match, and their different CIDs rule it out.
The weights are data (``data/match-weights.json``) so a programme can tune them from its own review
outcomes without touching code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import orjson
from rapidfuzz.distance import JaroWinkler, Levenshtein

from fhir_server.identity import identifiers as ids
from fhir_server.identity.features import Features, Name, NamePart, birth_variants

CERTAIN = "certain"
PROBABLE = "probable"
POSSIBLE = "possible"
CERTAINLY_NOT = "certainly-not"
UNLIKELY = "unlikely"  # too little evidence to name: not returned, not queued
GRADES = (CERTAIN, PROBABLE, POSSIBLE, CERTAINLY_NOT)


@cache
def weights() -> dict[str, Any]:
    return orjson.loads(
        resources.files("fhir_server.identity").joinpath("data/match-weights.json").read_bytes()
    )


@dataclass
class Match:
    grade: str
    score: float  # 0..1
    evidence: float  # the summed weights
    reasons: list[str] = field(default_factory=list)
    national: ids.NationalId | None = None  # the shared identifier of a certain match


def _near_cid(a: str, b: str) -> bool:
    """One digit different, or two neighbouring digits swapped."""
    if len(a) != len(b):
        return False
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    if len(diff) == 1:
        return True
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def _part_similarity(a: NamePart, b: NamePart) -> str:
    """exact | sound | close | near | different | unknown."""
    if a.thai and b.thai:
        # Both written in Thai: compare the Thai (romanising two different Thai names can make them
        # look alike: มะลิ and มาลัย are "mali" and "malai", twins' names).
        if a.thai == b.thai:
            return "exact"
        sa, sb = a.sounds, b.sounds
        if sa[0] == sb[0] or sa[1] == sb[1]:
            return "sound"
        if min(len(a.thai), len(b.thai)) >= 4 and Levenshtein.distance(a.thai, b.thai) == 1:
            return "near"
        return "different"
    if not (a.latin and b.latin):
        return "unknown" if not ((a.thai or a.latin) and (b.thai or b.latin)) else "different"
    if a.latin == b.latin:
        return "close"
    similarity = JaroWinkler.similarity(a.latin, b.latin)
    limits = weights()["name_similarity"]
    if similarity >= limits["close"]:
        return "close"
    if similarity >= limits["near"]:
        return "near"
    return "different"


def _names(q: list[Name], c: list[Name]) -> tuple[float, list[str]]:
    table = weights()["name"]
    best: tuple[float, list[str]] | None = None
    for a in q:
        for b in c:
            g, f = _part_similarity(a.given, b.given), _part_similarity(a.family, b.family)
            total = table["given"][g] + table["family"][f]
            if best is None or total > best[0]:
                best = (total, [f"given name {g}", f"family name {f}"])
    return best if best is not None else (0.0, [])


def compare(q: Features, c: Features) -> Match:
    """How likely ``q`` and ``c`` describe the same child."""
    w = weights()
    qc, cc = q.cids, c.cids
    if qc and cc and not qc & cc:
        return Match(CERTAINLY_NOT, 0.0, -math.inf, ["different citizen IDs"])
    shared = sorted(set(q.national) & set(c.national), key=lambda n: ids.STRENGTH[n.kind])
    if shared:
        return Match(CERTAIN, 1.0, math.inf, [f"same {shared[0].kind}"], shared[0])
    evidence, reasons = 0.0, []

    def add(weight: float, reason: str) -> None:
        nonlocal evidence
        evidence += weight
        reasons.append(reason)

    qg = {n.value for n in q.national if n.kind == ids.GCODE}
    cg = {n.value for n in c.national if n.kind == ids.GCODE}
    if qg and cg:
        add(w["gcode_different"], "different G-codes")
    qp = {(n.system, n.value) for n in q.national if n.kind == ids.PASSPORT}
    cp = {(n.system, n.value) for n in c.national if n.kind == ids.PASSPORT}
    if {s for s, _ in qp} & {s for s, _ in cp}:
        add(w["passport_different"], "different passport numbers")
    if any(n.kind == ids.NEWBORN for n in q.national) and any(n.kind == ids.NEWBORN for n in c.national):
        add(w["newborn_different"], "different newborn identifiers")  # a twin, or another mother's child
    near = [
        (a, b)
        for a in [*q.broken_cids, *qc]
        for b in [*c.broken_cids, *cc]
        if (a in q.broken_cids or b in c.broken_cids) and _near_cid(a, b)
    ]
    if near:
        add(w["cid_typo"], "citizen ID one typing slip away")
    elif (q.broken_cids and (cc or c.broken_cids)) or (c.broken_cids and qc):
        add(w["cid_typo_far"], "citizen IDs differ")
    if q.birth and c.birth:
        if q.birth == c.birth:
            add(w["birth"]["exact"], "same birth date")
        elif c.birth in birth_variants(q.birth):
            add(w["birth"]["swapped"], "birth date with day and month swapped")
        elif (q.birth.month, q.birth.day) == (c.birth.month, c.birth.day) and abs(
            q.birth.year - c.birth.year
        ) == 1:
            add(w["birth"]["year_slip"], "birth year one apart")
        elif (q.birth.year, q.birth.month) == (c.birth.year, c.birth.month):
            add(w["birth"]["same_month"], "same birth month")
        else:
            add(w["birth"]["different"], "different birth dates")
    if q.gender and c.gender:
        add(
            w["sex"]["same" if q.gender == c.gender else "different"],
            f"sex {'same' if q.gender == c.gender else 'different'}",
        )
    names, why = _names(q.names, c.names)
    if why:
        evidence += names
        reasons.extend(why)
    if q.nicknames and c.nicknames:
        same = bool(q.nicknames & c.nicknames)
        add(w["nickname"]["same" if same else "different"], f"nickname {'same' if same else 'different'}")
    if q.guardian_cids and c.guardian_cids:
        same = bool(q.guardian_cids & c.guardian_cids)
        add(
            w["guardian"]["shared" if same else "different"],
            f"guardian CID {'shared' if same else 'different'}",
        )
    if q.subdistricts and c.subdistricts and q.subdistricts & c.subdistricts:
        add(w["address"]["subdistrict"], "same subdistrict (DOPA)")
    elif q.districts and c.districts:
        same = bool(q.districts & c.districts)
        add(w["address"]["district" if same else "different"], f"district {'same' if same else 'different'}")
    score = 1.0 / (1.0 + math.exp(-(evidence - w["midpoint"]) / w["spread"]))
    if evidence >= w["probable_from"]:
        grade = PROBABLE
    elif evidence >= w["possible_from"]:
        grade = POSSIBLE
    else:
        grade = UNLIKELY
    return Match(grade, score, evidence, reasons)
