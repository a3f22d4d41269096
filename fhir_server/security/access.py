"""From a caller and its consented children to an ``Access`` restriction, and the same test in Python.

Whose data a resource is: the Patient it links to through its ``patient``/``subject``/``beneficiary``
reference (else its Patient-compartment references). Which data class it is: by resource type, and for
Observations by the Thai profile they claim. Who wrote it: the ``meta.tag`` this server stamps with the
writing agency (system ``OWNER_TAG_SYSTEM``, code ``Organization/ID``); clients cannot set or change it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from fhir_server import canonical, definitions, fhirjson
from fhir_server.search import registry
from fhir_server.search.access import Access, Grant
from fhir_server.search.model import param_key
from fhir_server.security.tokens import Principal

OWNER_TAG_SYSTEM = f"{canonical.BASE}/tag/writing-agency"
# Types outside the Patient compartment that still describe people or bundle their data: owner-only.
OWNER_ONLY = frozenset(
    {
        "Person",
        "Group",
        "Bundle",
        "Linkage",
        "Basic",
        "Binary",
        "Contract",
        "MessageHeader",
        "Subscription",
        "VerificationResult",
        "Parameters",
    }
)
_LINK_CODES = ("patient", "subject", "beneficiary")
TYPE_CLASS = {
    "Patient": "demographics",
    "Consent": "demographics",
    "RelatedPerson": "family",
    "FamilyMemberHistory": "family",
    "Immunization": "immunization",
    "ImmunizationRecommendation": "immunization",
    "ImmunizationEvaluation": "immunization",
    "ServiceRequest": "referral",
    "Task": "referral",
    "EpisodeOfCare": "social-welfare",
    "Coverage": "social-welfare",
    "QuestionnaireResponse": "wellbeing",
}
DEFAULT_CLASS = "health-condition"
_PERINATAL = "perinatal"
OBSERVATION_CLASS = {
    canonical.structure_definition(canonical.PROFILE_GROWTH): "growth",
    canonical.structure_definition(canonical.PROFILE_DEVELOPMENTAL_SCREENING): "development",
    canonical.structure_definition(canonical.PROFILE_WELLBEING): "wellbeing",
    canonical.structure_definition(canonical.PROFILE_WELLBEING_SCORE): "wellbeing",
    canonical.structure_definition(canonical.PROFILE_PREGNANCY_STATUS): _PERINATAL,
    canonical.structure_definition(canonical.PROFILE_ANTENATAL_SCREENING): _PERINATAL,
    canonical.structure_definition(canonical.PROFILE_BIRTH_OBSERVATION): _PERINATAL,
    canonical.structure_definition(canonical.PROFILE_PERINATAL_RISK): _PERINATAL,
}
# Types whose data class depends on the Thai profile a resource claims (else TYPE_CLASS / default).
# Pregnancy, birth and newborn records are "perinatal": the mother's (episode, visits, screening,
# delivery) link to her Patient, the newborn's to the child, so a child's consent never reaches the
# mother's records (docs/consent-and-authority.md, "A mother's pregnancy records").
PROFILE_CLASS: dict[str, dict[str, str]] = {
    "Observation": OBSERVATION_CLASS,
    "EpisodeOfCare": {canonical.structure_definition(canonical.PROFILE_PREGNANCY): _PERINATAL},
    "Encounter": {
        canonical.structure_definition(p): _PERINATAL
        for p in (
            canonical.PROFILE_ANTENATAL_VISIT,
            canonical.PROFILE_BIRTH,
            canonical.PROFILE_PERINATAL_VISIT,
        )
    },
    "Procedure": {canonical.structure_definition(canonical.PROFILE_DELIVERY): _PERINATAL},
    "MedicationAdministration": {
        canonical.structure_definition(canonical.PROFILE_NEWBORN_VITAMIN_K): _PERINATAL
    },
}


@cache
def patient_links() -> dict[str, tuple[int, ...]]:
    """Per patient-data type, the reference parameter keys that name its child (Patient: empty)."""
    compartment = definitions.compartment("Patient")
    links: dict[str, tuple[int, ...]] = {"Patient": ()}
    for rtype in sorted(definitions.resource_types()):
        if rtype == "Patient" or rtype in OWNER_ONLY:
            continue
        codes = [
            c
            for c in _LINK_CODES
            if (p := registry.get(rtype, c)) is not None
            and p.type == "reference"
            and (not p.targets or "Patient" in p.targets)
        ]
        if not codes:
            codes = list(compartment.get(rtype, []))
        keys = tuple(p.key for c in codes if (p := registry.get(rtype, c)) is not None)
        if keys:
            links[rtype] = keys
    return links


@cache
def open_types() -> frozenset[str]:
    """Types holding no child's data (agencies, terminology, definitions): visible to every caller."""
    return frozenset(definitions.resource_types()) - set(patient_links()) - OWNER_ONLY - {"AuditEvent"}


@cache
def owner_keys() -> dict[str, int]:
    return {t: param_key(t, "_tag") for t in definitions.resource_types()}


def data_class(resource_type: str, profiles: list[str] | tuple[str, ...] = ()) -> str:
    by_profile = PROFILE_CLASS.get(resource_type)
    if by_profile:
        for url in profiles:
            if url in by_profile:
                return by_profile[url]
    return TYPE_CLASS.get(resource_type, DEFAULT_CLASS)


@cache
def _readable(principal_key: tuple[str, str, str]) -> frozenset[str]:
    from fhir_server.security import roles
    from fhir_server.security.scopes import ScopeSet

    scopes, role_name, _ = principal_key
    role, scope_set = roles.get_role(role_name), ScopeSet.parse(scopes)
    return frozenset(
        t
        for t in definitions.resource_types()
        if any(scope_set.allows(t, ch) and roles.type_allowed(role, t, ch) for ch in "rs")
    )


def readable_types(principal: Principal) -> frozenset[str]:
    return _readable((str(principal.scopes), principal.role.name, ""))


def build_access(
    principal: Principal,
    patients: dict[str, frozenset[str]],
    *,
    emergency: bool = False,
    golden: frozenset[str] = frozenset(),
) -> Access | None:
    """The caller's restriction; None when it may see everything it can name (an admin with */r).

    ``golden``: the golden records (``fhir_server.identity``) of the children the caller serves, which
    it may read (identity data only: a golden record holds nothing else).
    """
    readable = readable_types(principal)
    everything = frozenset(definitions.resource_types())
    if principal.role.unrestricted or principal.role.only_types is not None:
        return None if readable == everything else Access(types=readable, open_types=readable)
    opened = open_types()
    links = patient_links()
    if emergency:
        opened = opened | (frozenset(links) - {"AuditEvent"})
    grants: list[Grant] = []
    for rtype, keys in links.items():
        if rtype not in readable or rtype in opened or rtype == "AuditEvent":
            continue
        by_profile = PROFILE_CLASS.get(rtype)
        if by_profile:
            profile_key = param_key(rtype, "_profile")
            named = tuple(sorted(by_profile))
            for url, cls in by_profile.items():
                grants.append(Grant(rtype, keys, patients.get(cls, frozenset()), profile_key, (url,)))
            fallback = TYPE_CLASS.get(rtype, DEFAULT_CLASS)
            grants.append(Grant(rtype, keys, patients.get(fallback, frozenset()), profile_key, (), named))
            continue
        grants.append(Grant(rtype, keys, patients.get(data_class(rtype), frozenset())))
    if golden and "Patient" in readable and "Patient" not in opened:
        grants.append(Grant("Patient", (), golden))
    return Access(
        types=readable,
        open_types=opened,
        owner_system=OWNER_TAG_SYSTEM,
        owner_code=principal.organization,
        owner_keys=owner_keys(),
        grants=tuple(g for g in grants if g.patients),
    )


def owner_of(resource: dict[str, Any]) -> str | None:
    meta = resource.get("meta")
    for tag in meta.get("tag", []) if isinstance(meta, dict) and isinstance(meta.get("tag"), list) else []:
        if isinstance(tag, dict) and tag.get("system") == OWNER_TAG_SYSTEM:
            return str(tag.get("code"))
    return None


def stamp_owner(body: bytes, resource: dict[str, Any], owner: str) -> bytes:
    """``body`` with exactly one writing-agency tag, ``owner`` (other members keep their bytes)."""
    meta = resource.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    tags = meta.get("tag")
    kept = [
        t
        for t in (tags if isinstance(tags, list) else [])
        if not (isinstance(t, dict) and t.get("system") == OWNER_TAG_SYSTEM)
    ]
    meta["tag"] = [*kept, {"system": OWNER_TAG_SYSTEM, "code": owner}]
    return fhirjson.replace_member(body, "meta", meta)


def linked_patients(resource_type: str, resource: dict[str, Any]) -> set[str]:
    """The children a resource's data belongs to (for consent and for audit)."""
    if resource_type == "Patient":
        return {str(resource.get("id"))}
    keys = patient_links().get(resource_type)
    if not keys:
        return set()
    from fhir_server.search.extract import extract_index

    rows = extract_index(resource).reference
    return {row[2] for row in rows if row[0] in keys and row[1] == "Patient" and row[2]}


def visible(access: Access | None, resource_type: str, body: bytes) -> bool:
    """The Python twin of the SQL restriction, for reads, vreads and history entries."""
    if access is None:
        return True
    if access.types is not None and resource_type not in access.types:
        return False
    if resource_type in access.open_types:
        return True
    resource = orjson.loads(body) if body else {}
    if access.owner_code and owner_of(resource) == access.owner_code:
        return True
    grants = access.grants_for(resource_type)
    if not grants:
        return False
    meta = resource.get("meta")
    claimed = meta.get("profile") if isinstance(meta, dict) else None
    profiles = set(claimed) if isinstance(claimed, list) else set()
    children = linked_patients(resource_type, resource)
    for grant in grants:
        if grant.profiles and not profiles & set(grant.profiles):
            continue
        if grant.other_profiles and profiles & set(grant.other_profiles):
            continue
        if grant.patients is None or children & grant.patients:
            return True
    return False
