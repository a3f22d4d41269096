"""The identity model as it is stored: golden Patients that carry their links and review state.

Everything the identity layer knows lives in the golden Patients themselves, written in the same store
transaction as the source record that caused the change, so a link can never be half-made:

- ``meta.tag`` ``IDENTITY_TAG_SYSTEM|golden`` marks a golden record (``retired`` once merged away,
  ``review`` while probable matches wait for a data steward). Clients cannot write these tags.
- ``link`` (type ``seealso``) names each source record, with the ``th-identity-link`` extension saying
  how sure the link is (``certain``/``probable``), how it was made (``automatic``/``manual``), by which
  rule, when and by whom. A golden merged away carries ``replaced-by`` to the survivor (which carries
  ``replaces``).
- probable matches waiting for review are kept beside the golden record, not in it
  (``fhir_server.identity.review``); ``th-identity-not-match`` records a steward's "not the same
  child", which automatic linking then respects.
- ``meta.tag`` codes of ``IDENTITY_BLOCK_TAG_SYSTEM`` are the golden record's blocking keys
  (``fhir_server.identity.blocking``).
- Every merged element names the source records it came from (``th-identity-source`` extensions, on
  primitives through ``_birthDate``/``_gender``): element provenance without extra resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from fhir_server import canonical

TAG_SYSTEM = canonical.IDENTITY_TAG_SYSTEM
GOLDEN = "golden"
RETIRED = "retired"
REVIEW = "review"
SOURCE_EXT = canonical.structure_definition(canonical.EXT_IDENTITY_SOURCE)
LINK_EXT = canonical.structure_definition(canonical.EXT_IDENTITY_LINK)
CANDIDATE_EXT = canonical.structure_definition(canonical.EXT_IDENTITY_CANDIDATE)
NOT_MATCH_EXT = canonical.structure_definition(canonical.EXT_IDENTITY_NOT_MATCH)
GUARDIAN_ID_EXT = canonical.structure_definition(canonical.EXT_GUARDIAN_IDENTIFIER)

CERTAIN = "certain"
PROBABLE = "probable"
AUTOMATIC = "automatic"
MANUAL = "manual"
SERVER = "termtem"  # "by" of automatic links: the server's linking engine


def patient_ref(id_: str) -> dict[str, str]:
    return {"reference": f"Patient/{id_}"}


def ref_id(value: Any) -> str | None:
    """The id of a ``Patient/<id>`` Reference (or reference string), else None."""
    ref = value.get("reference") if isinstance(value, dict) else value
    if isinstance(ref, str) and ref.startswith("Patient/"):
        rest = ref[len("Patient/") :].split("/_history")[0]
        return rest or None
    return None


BLOCK_SYSTEM = canonical.IDENTITY_BLOCK_TAG_SYSTEM


def server_tag_systems(resource: dict[str, Any]) -> set[str]:
    """The identity layer's tag systems present in ``resource`` (clients may not write them)."""
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return {
        str(t.get("system"))
        for t in (tags if isinstance(tags, list) else [])
        if isinstance(t, dict) and t.get("system") in (TAG_SYSTEM, BLOCK_SYSTEM)
    }


def identity_tags(resource: dict[str, Any]) -> set[str]:
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return {
        str(t.get("code"))
        for t in (tags if isinstance(tags, list) else [])
        if isinstance(t, dict) and t.get("system") == TAG_SYSTEM
    }


def is_golden(resource: dict[str, Any]) -> bool:
    """A server-managed record (active golden, or retired by a merge)."""
    return bool(identity_tags(resource) & {GOLDEN, RETIRED})


@dataclass(frozen=True)
class Link:
    """One source record's link to its golden record."""

    source: str  # Patient id
    assurance: str = CERTAIN
    method: str = AUTOMATIC
    rule: str = ""  # cid | gcode | passport | newborn | new-record | steward | merge
    when: str = ""  # FHIR instant
    by: str = SERVER  # client id of the steward for manual links
    merged_from: str | None = None  # the golden this link came from by a merge (for undo)

    def to_fhir(self) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [
            {"url": "assurance", "valueCode": self.assurance},
            {"url": "method", "valueCode": self.method},
        ]
        if self.rule:
            parts.append({"url": "rule", "valueCode": self.rule})
        if self.when:
            parts.append({"url": "when", "valueDateTime": self.when})
        if self.by:
            parts.append({"url": "by", "valueString": self.by})
        if self.merged_from:
            parts.append({"url": "mergedFrom", "valueReference": patient_ref(self.merged_from)})
        return {
            "extension": [{"url": LINK_EXT, "extension": parts}],
            "other": patient_ref(self.source),
            "type": "seealso",
        }

    @staticmethod
    def from_fhir(link: dict[str, Any]) -> Link | None:
        source = ref_id(link.get("other"))
        if source is None or link.get("type") != "seealso":
            return None
        values: dict[str, Any] = {}
        for ext in link.get("extension", []) if isinstance(link.get("extension"), list) else []:
            if isinstance(ext, dict) and ext.get("url") == LINK_EXT:
                for part in ext.get("extension", []):
                    key = part.get("url")
                    value = next((v for k, v in part.items() if k.startswith("value")), None)
                    values[key] = ref_id(value) if key == "mergedFrom" else value
        return Link(
            source=source,
            assurance=values.get("assurance") or CERTAIN,
            method=values.get("method") or AUTOMATIC,
            rule=values.get("rule") or "",
            when=values.get("when") or "",
            by=values.get("by") or "",
            merged_from=values.get("mergedFrom"),
        )


@dataclass(frozen=True)
class Candidate:
    """A probable match of this golden record with another, waiting for a data steward."""

    other: str  # golden Patient id
    score: float
    grade: str
    reasons: tuple[str, ...] = ()
    when: str = ""

    def to_fhir(self) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [
            {"url": "other", "valueReference": patient_ref(self.other)},
            {"url": "score", "valueDecimal": round(self.score, 4)},
            {"url": "grade", "valueCode": self.grade},
        ]
        parts.extend({"url": "reason", "valueString": r} for r in self.reasons)
        if self.when:
            parts.append({"url": "when", "valueDateTime": self.when})
        return {"url": CANDIDATE_EXT, "extension": parts}

    @staticmethod
    def from_fhir(ext: dict[str, Any]) -> Candidate | None:
        other, score, grade, when = None, 0.0, "possible", ""
        reasons: list[str] = []
        for part in ext.get("extension", []) if isinstance(ext.get("extension"), list) else []:
            key = part.get("url")
            if key == "other":
                other = ref_id(part.get("valueReference"))
            elif key == "score":
                score = float(part.get("valueDecimal", 0))
            elif key == "grade":
                grade = str(part.get("valueCode"))
            elif key == "reason":
                reasons.append(str(part.get("valueString")))
            elif key == "when":
                when = str(part.get("valueDateTime"))
        return Candidate(other, score, grade, tuple(reasons), when) if other else None


@dataclass
class GoldenState:
    """What a golden record decides (its links and review state); its content is derived from it."""

    id: str
    links: list[Link] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    not_match: set[str] = field(default_factory=set)
    replaced_by: str | None = None  # set on a golden merged into another
    replaces: list[str] = field(default_factory=list)  # goldens merged into this one

    @property
    def retired(self) -> bool:
        return self.replaced_by is not None

    def sources(self) -> list[str]:
        return [link.source for link in self.links]

    def link_of(self, source: str) -> Link | None:
        return next((link for link in self.links if link.source == source), None)

    def without(self, source: str) -> None:
        self.links = [link for link in self.links if link.source != source]

    def with_link(self, link: Link) -> None:
        self.without(link.source)
        self.links.append(link)

    def add_candidate(self, candidate: Candidate) -> None:
        from fhir_server.identity.review import keep_best

        if candidate.other == self.id or candidate.other in self.not_match:
            return
        kept = [c for c in self.candidates if c.other != candidate.other]
        self.candidates = keep_best([*kept, candidate])

    def drop_candidate(self, other: str) -> None:
        self.candidates = [c for c in self.candidates if c.other != other]

    @staticmethod
    def read(id_: str, resource: dict[str, Any]) -> GoldenState:
        state = GoldenState(id_)
        for link in resource.get("link", []) if isinstance(resource.get("link"), list) else []:
            if not isinstance(link, dict):
                continue
            kind = link.get("type")
            if kind == "seealso" and (parsed := Link.from_fhir(link)) is not None:
                state.links.append(parsed)
            elif kind == "replaced-by":
                state.replaced_by = ref_id(link.get("other"))
            elif kind == "replaces" and (other := ref_id(link.get("other"))):
                state.replaces.append(other)
        for ext in resource.get("extension", []) if isinstance(resource.get("extension"), list) else []:
            if not isinstance(ext, dict):
                continue
            if ext.get("url") == CANDIDATE_EXT and (candidate := Candidate.from_fhir(ext)) is not None:
                state.candidates.append(candidate)
            elif ext.get("url") == NOT_MATCH_EXT and (other := ref_id(ext.get("valueReference"))):
                state.not_match.add(other)
        return state

    def copy(self) -> GoldenState:
        return replace(
            self,
            links=list(self.links),
            candidates=list(self.candidates),
            not_match=set(self.not_match),
            replaces=list(self.replaces),
        )


def is_golden_body(body: bytes) -> bool:
    """``is_golden`` on stored bytes, without parsing the (many) records that cannot be golden."""
    return TAG_SYSTEM.encode() in body and is_golden(orjson.loads(body))
