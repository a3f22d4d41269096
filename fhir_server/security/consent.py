"""The PDPA decision: do a child's active TH Data-Sharing Consents let this agency see a class of its data?

The rules are written for a data-protection officer in ``docs/consent-and-authority.md``; in short:
- Only Consents that count take part: ``status = active`` and recorded with authority (see
  ``authority``: by an agency serving the child, or an admin). A withdrawal (any other status) stops
  a Consent at once, because the cached view is brought up to date whenever any Consent changes.
- A provision matches when each criterion it states includes the request: actor (the caller's
  Organization by reference, or one of its registered identifiers; when actors are named, only those
  agencies), agency type (the ``th-consent-agency-type`` extension, checked against the type the
  server's registry holds for the caller), purpose of use, data class (``provision.code`` in
  ``th-data-class``) and period (the moment of access). Nested provisions refine their parent: they
  match only where the parent matches.
- Within one Consent, a matching provision that states criteria decides (``deny`` over ``permit``);
  a provision stating none is the Consent's default and decides only when nothing more specific did.
- Across Consents, permissions add up and an explicit ``deny`` (a provision stating criteria) wins.
  A default refusal ("deny unless...") is the absence of a permission, not a refusal of what another
  Consent permits, so two "deny by default, permit one agency" Consents never cancel each other.
- Criteria this server cannot check (``dataPeriod``, ``class``, ``data``, ``securityLabel``,
  ``action``) fail closed: such a permit never matches, such a deny always does.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from fhir_server import canonical
from fhir_server.search.values import date_range
from fhir_server.security.authority import ADMIN, authority_mark, consent_patient, counts
from fhir_server.storage.base import HistoryQuery, Store
from fhir_server.storage.newest import UNKNOWN, Newest, Unknown, newest_version

_AGENCY_TYPE_EXT = canonical.structure_definition(canonical.EXT_CONSENT_AGENCY_TYPE)
_AGENCY_TYPE_SYSTEM = canonical.code_system(canonical.CS_AGENCY_TYPE)
_DATA_CLASS_SYSTEM = canonical.code_system(canonical.CS_DATA_CLASS)
_UNCHECKED = ("dataPeriod", "class", "data", "securityLabel", "action")
DATA_CLASSES = (
    "demographics",
    "contact",
    "family",
    "growth",
    "development",
    "immunization",
    "health-condition",
    "disability",
    "education",
    "wellbeing",
    "referral",
    "social-welfare",
    "perinatal",
)


@dataclass(frozen=True)
class AccessRequest:
    organization: str  # Organization/ID of the caller
    agency_type: str | None  # from the server's agency registry
    purpose: str  # v3 ActReason code
    when_ms: int  # moment of access, epoch milliseconds
    agency_ids: frozenset[str] = frozenset()  # the caller's registered identifiers, "system|value"


def _codes(items: Any, system: str | None) -> set[str]:
    """Codes of a list of Codings or CodeableConcepts (``system`` None: any system)."""
    out: set[str] = set()
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        codings = item.get("coding") if "coding" in item else [item]
        for coding in codings if isinstance(codings, list) else []:
            if (
                isinstance(coding, dict)
                and isinstance(coding.get("code"), str)
                and (system is None or coding.get("system") in (system, None))
            ):
                out.add(coding["code"])
    return out


def _agency_types(provision: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for ext in provision.get("extension", []) if isinstance(provision.get("extension"), list) else []:
        if isinstance(ext, dict) and ext.get("url") == _AGENCY_TYPE_EXT:
            found |= _codes([ext.get("valueCodeableConcept")], _AGENCY_TYPE_SYSTEM)
    return found


def _actors(provision: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The agencies a provision names: Organization references, and identifiers as "system|value"."""
    refs: set[str] = set()
    identifiers: set[str] = set()
    for actor in provision.get("actor", []) if isinstance(provision.get("actor"), list) else []:
        target = actor.get("reference") if isinstance(actor, dict) else None
        if not isinstance(target, dict):
            continue
        ref = target.get("reference")
        if isinstance(ref, str) and "Organization/" in ref:
            refs.add("Organization/" + ref.rsplit("Organization/", 1)[1].split("/_history")[0])
        identifier = target.get("identifier")
        if (
            isinstance(identifier, dict)
            and isinstance(identifier.get("system"), str)
            and isinstance(identifier.get("value"), str)
            and target.get("type") in (None, "Organization")
        ):
            identifiers.add(f"{identifier['system']}|{identifier['value']}")
    return refs, identifiers


def _period(provision: dict[str, Any]) -> tuple[float, float] | None:
    period = provision.get("period")
    if not isinstance(period, dict):
        return None
    start = date_range(period["start"]) if isinstance(period.get("start"), str) else None
    end = date_range(period["end"]) if isinstance(period.get("end"), str) else None
    return (start[0] if start else -math.inf, end[1] if end else math.inf)


def _stated(provision: dict[str, Any]) -> bool:
    keys = ("actor", "purpose", "code", "period", *_UNCHECKED)
    return any(provision.get(k) for k in keys) or bool(_agency_types(provision))


def _matches(provision: dict[str, Any], req: AccessRequest, data_class: str) -> bool:
    """Whether the provision's own criteria include the request."""
    deny = provision.get("type") == "deny"
    if any(provision.get(k) for k in _UNCHECKED):
        return deny
    if provision.get("actor"):
        refs, identifiers = _actors(provision)
        if req.organization not in refs and not (req.agency_ids & identifiers):
            return False
    types = _agency_types(provision)
    if types and (req.agency_type is None or req.agency_type not in types):
        return False
    if provision.get("purpose") and req.purpose not in _codes(provision.get("purpose"), None):
        return False
    if provision.get("code"):
        classes = _codes(provision.get("code"), _DATA_CLASS_SYSTEM)
        if not classes:
            return deny
        if data_class not in classes:
            return False
    period = _period(provision)
    return period is None or period[0] <= req.when_ms <= period[1]


def verdict(consent: dict[str, Any], req: AccessRequest, data_class: str) -> tuple[str, bool] | None:
    """This Consent's answer, ``(permit|deny, explicit)``, or None when it says nothing.

    ``explicit`` is False when only the Consent's criteria-free default decided.
    """
    if consent.get("status") != "active" or not isinstance(consent.get("provision"), dict):
        return None
    stated: list[str] = []
    defaults: list[tuple[int, str]] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        if not _matches(node, req, data_class):
            return
        kind = "deny" if node.get("type") == "deny" else "permit"
        if _stated(node):
            stated.append(kind)
        else:
            defaults.append((depth, kind))
        for child in node.get("provision", []) if isinstance(node.get("provision"), list) else []:
            if isinstance(child, dict):
                walk(child, depth + 1)

    walk(consent["provision"], 0)
    if "deny" in stated:
        return "deny", True
    if stated:
        return "permit", True
    return (max(defaults)[1], False) if defaults else None


def decide(consent: dict[str, Any], req: AccessRequest, data_class: str) -> str | None:
    """``permit``, ``deny`` or None: what this one Consent says about the request."""
    found = verdict(consent, req, data_class)
    return found[0] if found else None


def _boundaries(node: dict[str, Any]) -> list[float]:
    out: list[float] = []
    period = _period(node)
    if period is not None:
        out.extend(p for p in (period[0], period[1] + 1) if math.isfinite(p))
    for child in node.get("provision", []) if isinstance(node.get("provision"), list) else []:
        if isinstance(child, dict):
            out.extend(_boundaries(child))
    return out


def _patient_classes(consents: list[dict[str, Any]], req: AccessRequest) -> set[str]:
    """The data classes one child's counted Consents let ``req`` see: permits add up, and an
    explicit deny in any of them wins; a Consent's default refusal does not cancel another's permit."""
    allowed: set[str] = set()
    for data_class in DATA_CLASSES:
        permitted = False
        for consent in consents:
            found = verdict(consent, req, data_class)
            if found is None:
                continue
            kind, explicit = found
            if kind == "deny" and explicit:
                permitted = False
                break
            permitted = permitted or kind == "permit"
        if permitted:
            allowed.add(data_class)
    return allowed


def allowed_classes(consents: list[dict[str, Any]], req: AccessRequest) -> set[str]:
    """The data classes one child's counted Consents let ``req`` see (``_patient_classes``)."""
    return _patient_classes(consents, req)


class Children(Protocol):
    """Which Patient records are one child (``fhir_server.identity.book.IdentityBook``)."""

    version: int

    def child(self, patient_id: str) -> str | None: ...

    def linked(self, patient_id: str) -> frozenset[str]: ...

    def spoken_for(self, organization: str, patient_id: str) -> frozenset[str]: ...


@dataclass
class _View:
    """One caller kind's answer: Patient records per data class, valid until the next period boundary."""

    request: AccessRequest
    valid_until: float
    classes: dict[str, set[str]]
    frozen: dict[str, frozenset[str]] | None = None

    def answer(self) -> dict[str, frozenset[str]]:
        if self.frozen is None:
            self.frozen = {c: frozenset(ids) for c, ids in self.classes.items()}
        return self.frozen

    def update(self, decided: dict[str, set[str]]) -> None:
        """Apply one child's decisions: record id -> the data classes the caller may see of it."""
        for record, allowed in decided.items():
            for data_class, ids in self.classes.items():
                if data_class in allowed:
                    ids.add(record)
                else:
                    ids.discard(record)
        self.frozen = None


class ConsentBook:
    """Active Consents by child, kept in step with the store, and per-caller views cached until the
    next period boundary. One instance per server process.

    Each request asks the store for its newest Consent history entry (one indexed lookup); when it
    changed, only the Consents written since are read and only their children's decisions redone, so
    a withdrawal counts from the next request without re-reading every Consent.
    """

    _CHANGES_PAGE = 500  # more changes than this at once: reload everything

    def __init__(self) -> None:
        self._generation: tuple[str, int, str] | bool | None = False
        self._since: str | None = None
        self._by_id: dict[str, tuple[str, dict[str, Any]]] = {}
        self._by_patient: dict[str, list[dict[str, Any]]] = {}
        self._boundaries: dict[str, list[float]] = {}
        self._views: dict[tuple[str, str | None, str, frozenset[str]], _View] = {}
        self._lock = asyncio.Lock()  # one refresh at a time: concurrent requests share its result
        # A child's Consents decide for all its records across agencies (fhir_server.identity): they
        # are grouped by child, and regrouped whenever the links change.
        self._children: Children | None = None
        self._children_version: int | None = None

    def _key(self, patient: str) -> str:
        children = self._children
        return (children.child(patient) or patient) if children is not None else patient

    def _grouped(self) -> dict[str, list[dict[str, Any]]]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for patient, consents in self._by_patient.items():
            groups.setdefault(self._key(patient), []).extend(consents)
        return groups

    def _group_of(self, key: str) -> list[dict[str, Any]]:
        children = self._children
        members = children.linked(key) if children is not None else frozenset({key})
        return [c for m in members for c in self._by_patient.get(m, [])]

    def _covers(self, consent: dict[str, Any]) -> frozenset[str]:
        """The records of its child a counted Consent decides for: all of them when an admin recorded
        it, else those its recording agency speaks for (``fhir_server.identity.serving``: its own
        records, or all of the child's once a data steward linked or confirmed its record)."""
        from fhir_server.security.access import owner_of

        patient = consent_patient(consent) or ""
        children = self._children
        if children is None:
            return frozenset({patient})
        recorder = owner_of(consent)
        if recorder is None or authority_mark(consent) == ADMIN:
            return children.linked(patient)
        return children.spoken_for(recorder, patient)

    def _decide(self, key: str, consents: list[dict[str, Any]], req: AccessRequest) -> dict[str, set[str]]:
        """For each record of the child ``key``, the data classes its applicable Consents open."""
        children = self._children
        members = children.linked(key) if children is not None else frozenset({key})
        covers = [(consent, self._covers(consent)) for consent in consents]
        decided: dict[str, set[str]] = {}
        memo: dict[tuple[int, ...], set[str]] = {}
        for record in members:
            applicable = tuple(i for i, (_, covered) in enumerate(covers) if record in covered)
            if applicable not in memo:
                memo[applicable] = (
                    _patient_classes([covers[i][0] for i in applicable], req) if applicable else set()
                )
            decided[record] = memo[applicable]
        return decided

    def _forget(self, consent_id: str) -> str | None:
        old = self._by_id.pop(consent_id, None)
        self._boundaries.pop(consent_id, None)
        if old is None:
            return None
        patient, consent = old
        remaining = [c for c in self._by_patient.get(patient, []) if c is not consent]
        if remaining:
            self._by_patient[patient] = remaining
        else:
            self._by_patient.pop(patient, None)
        return patient

    async def _learn(self, store: Store, consent_id: str, consent: dict[str, Any]) -> str | None:
        patient = consent_patient(consent)
        if not patient or consent.get("status") != "active" or not await counts(store, consent):
            return None
        self._by_id[consent_id] = (patient, consent)
        self._by_patient.setdefault(patient, []).append(consent)
        provision = consent.get("provision")
        self._boundaries[consent_id] = _boundaries(provision) if isinstance(provision, dict) else []
        return patient

    async def _reload(self, store: Store) -> None:
        self._by_id, self._by_patient, self._boundaries, self._views = {}, {}, {}, {}
        async for stored in store.iterate("Consent"):
            await self._learn(store, stored.id, orjson.loads(stored.body))

    async def _apply_changes(self, store: Store) -> bool:
        """Apply the Consent versions written since the last look; False when a reload is needed."""
        if self._since is None:
            return False
        page = await store.history(
            HistoryQuery(
                resource_type="Consent", since=self._since, count=self._CHANGES_PAGE, before_seq=2**62
            )
        )
        if page.next_before_seq is not None:
            return False
        touched: set[str] = set()
        for stored in reversed(page.entries):  # oldest first, so the last version of each Consent wins
            if (patient := self._forget(stored.id)) is not None:
                touched.add(patient)
            if stored.deleted:
                continue
            if patient := await self._learn(store, stored.id, orjson.loads(stored.body)):
                touched.add(patient)
        new_bounds = [b for e in page.entries for b in self._boundaries.get(e.id, [])]
        keys = {self._key(patient) for patient in touched}
        for view in self._views.values():
            later = [b for b in new_bounds if b > view.request.when_ms]
            view.valid_until = min([view.valid_until, *later])
            for key in keys:
                view.update(self._decide(key, self._group_of(key), view.request))
        return True

    async def _refresh(self, store: Store, newest: Newest | Unknown = UNKNOWN) -> None:
        generation = await newest_version(store, "Consent") if isinstance(newest, Unknown) else newest
        if generation == self._generation:
            return
        async with self._lock:
            if generation == self._generation:
                return
            if self._generation is False or not await self._apply_changes(store):
                await self._reload(store)
            self._generation = generation
            self._since = generation[2] if generation else None

    async def patients_by_class(
        self,
        store: Store,
        req: AccessRequest,
        children: Children | None = None,
        newest: Newest | Unknown = UNKNOWN,
    ) -> dict[str, frozenset[str]]:
        """For each data class, the Patient ids whose Consents let the caller see that class now.

        With ``children`` (the identity links), a child's Consents are decided together, whichever of
        its records each names (permits add up, an explicit deny wins), each for the records of the
        child its recorder speaks for (``_covers``); the answer names records, not children.
        """
        await self._refresh(store, newest)  # newest: the newest Consent version, if read already
        if children is not None and (
            children is not self._children or children.version != self._children_version
        ):
            self._children, self._children_version = children, children.version
            self._views = {}
        key = (req.organization, req.agency_type, req.purpose, req.agency_ids)
        view = self._views.get(key)
        if view is not None and view.request.when_ms <= req.when_ms < view.valid_until:
            return view.answer()
        classes: dict[str, set[str]] = {c: set() for c in DATA_CLASSES}
        for child, consents in self._grouped().items():
            for record, allowed in self._decide(child, consents, req).items():
                for data_class in allowed:
                    classes[data_class].add(record)
        bounds = (b for bs in self._boundaries.values() for b in bs if b > req.when_ms)
        view = _View(req, min(bounds, default=math.inf), classes)
        if len(self._views) > 1024:
            self._views.clear()
        self._views[key] = view
        return view.answer()
