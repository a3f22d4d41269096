"""The PDPA decision: does an active TH Data-Sharing Consent let this agency see this class of a child's data?

Semantics (documented in the README's Security section):
- Only Consents with ``status = active`` count; any other status (a withdrawal sets ``inactive``) stops
  them at once, because the cached view is rebuilt whenever any Consent changes.
- A provision matches when each criterion it states includes the request: actor (an Organization
  reference, or an agency type in the ``th-consent-agency-type`` extension), purpose of use, data class
  (``provision.code`` in ``th-data-class``) and period (the moment of access). Nested provisions
  refine their parent: they match only where the parent matches.
- Among matching provisions that state criteria, any ``deny`` wins over every ``permit``, also across
  several Consents for the same child. A provision stating no criteria is the Consent's default and
  decides only when nothing more specific matched.
- Criteria this server cannot check (``dataPeriod``, ``class``, ``data``, ``securityLabel``,
  ``action``) fail closed: such a permit never matches, such a deny always does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_server import canonical
from fhir_server.search.values import date_range
from fhir_server.storage.base import HistoryQuery, Store

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
)


@dataclass(frozen=True)
class AccessRequest:
    organization: str  # Organization/ID of the caller
    agency_type: str | None
    purpose: str  # v3 ActReason code
    when_ms: int  # moment of access, epoch milliseconds


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


def _actors(provision: dict[str, Any]) -> set[str]:
    refs = set()
    for actor in provision.get("actor", []) if isinstance(provision.get("actor"), list) else []:
        ref = (actor.get("reference") or {}).get("reference") if isinstance(actor, dict) else None
        if isinstance(ref, str) and "Organization/" in ref:
            refs.add("Organization/" + ref.rsplit("Organization/", 1)[1].split("/_history")[0])
    return refs


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
    actors, types = _actors(provision), _agency_types(provision)
    if (actors or types or provision.get("actor")) and not (
        req.organization in actors or (req.agency_type is not None and req.agency_type in types)
    ):
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


def decide(consent: dict[str, Any], req: AccessRequest, data_class: str) -> str | None:
    """``permit``, ``deny`` or None (this Consent says nothing about the request)."""
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
        return "deny"
    if stated:
        return "permit"
    return max(defaults)[1] if defaults else None


def consent_patient(consent: dict[str, Any]) -> str | None:
    patient = consent.get("patient")
    ref = patient.get("reference") if isinstance(patient, dict) else None
    if isinstance(ref, str) and "Patient/" in ref:
        return ref.rsplit("Patient/", 1)[1].split("/_history")[0] or None
    return None


def _boundaries(node: dict[str, Any]) -> list[float]:
    out: list[float] = []
    period = _period(node)
    if period is not None:
        out.extend(p for p in (period[0], period[1] + 1) if math.isfinite(p))
    for child in node.get("provision", []) if isinstance(node.get("provision"), list) else []:
        if isinstance(child, dict):
            out.extend(_boundaries(child))
    return out


class ConsentBook:
    """Active Consents, re-read whenever any Consent changes, and per-caller views cached until the
    next period boundary. One instance per server process."""

    def __init__(self) -> None:
        self._generation: tuple[str, int, str] | bool | None = False
        self._consents: list[tuple[str, dict[str, Any]]] = []
        self._boundaries: list[float] = []
        self._views: dict[tuple[str, str | None, str], tuple[float, dict[str, frozenset[str]]]] = {}

    async def _refresh(self, store: Store) -> None:
        page = await store.history(HistoryQuery(resource_type="Consent", count=1, before_seq=2**62))
        newest = page.entries[0] if page.entries else None
        generation = (newest.id, newest.version, newest.last_updated) if newest else None
        if generation == self._generation:
            return
        consents = []
        async for stored in store.iterate("Consent"):
            consent = orjson.loads(stored.body)
            patient = consent_patient(consent)
            if patient and consent.get("status") == "active":
                consents.append((patient, consent))
        self._consents = consents
        self._boundaries = sorted(
            {
                b
                for _, c in consents
                for b in _boundaries(c["provision"])
                if isinstance(c.get("provision"), dict)
            }
        )
        self._views = {}
        self._generation = generation

    async def patients_by_class(self, store: Store, req: AccessRequest) -> dict[str, frozenset[str]]:
        """For each data class, the children whose Consents let the caller see that class now."""
        await self._refresh(store)
        key = (req.organization, req.agency_type, req.purpose)
        cached = self._views.get(key)
        if cached is not None and req.when_ms < cached[0]:
            return cached[1]
        permits: dict[str, set[str]] = {c: set() for c in DATA_CLASSES}
        denies: dict[str, set[str]] = {c: set() for c in DATA_CLASSES}
        for patient, consent in self._consents:
            for data_class in DATA_CLASSES:
                decision = decide(consent, req, data_class)
                if decision == "permit":
                    permits[data_class].add(patient)
                elif decision == "deny":
                    denies[data_class].add(patient)
        view = {c: frozenset(permits[c] - denies[c]) for c in DATA_CLASSES}
        valid_until = next((b for b in self._boundaries if b > req.when_ms), math.inf)
        if len(self._views) > 1024:
            self._views.clear()
        self._views[key] = (valid_until, view)
        return view
