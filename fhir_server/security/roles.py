"""Client roles and what each may do at most, whatever scopes it was registered with.

A role fixes the default purpose of use (v3 ActReason), the purposes a request may state instead, and
caps on the scopes: a researcher never reads directly identifying resources and writes only its own
cohort Groups; an
auditor reads AuditEvents and nothing else; a district committee sees aggregated reports and the
definitions behind them, never a child's record; a data steward sees the identity of every child
(Patient and RelatedPerson records, nothing clinical or social) to review and correct record linkage;
only admin sees every agency's data without consent.
"""

from __future__ import annotations

from dataclasses import dataclass

# Resources whose content directly identifies a person (names, citizen ids, addresses).
IDENTIFIED_TYPES = frozenset({"Patient", "RelatedPerson", "Person"})
# What a data steward reads: the identity data class (children and their guardians), no other data.
IDENTITY_TYPES = frozenset({"Patient", "RelatedPerson"})


@dataclass(frozen=True)
class Role:
    name: str
    purpose: str  # default purpose of use
    purposes: frozenset[str]  # purposes a request may state (X-Purpose-Of-Use)
    default_scopes: str
    read_only: bool = False
    writable_types: frozenset[str] = frozenset()  # what a read-only role may still write (its own)
    only_types: frozenset[str] | None = None  # the role sees these types and nothing else
    denied_types: frozenset[str] = frozenset()
    unrestricted: bool = False  # sees every agency's data without consent (admin)
    emergency: bool = False  # may state ETREAT (break-glass) with a reason
    aggregates_only: bool = False  # sees counts (suppressed below 5 children), never a record


# What a district committee reads besides aggregated reports: definitions, agencies and terminology,
# none of which holds a child's data. Any other type is refused (403) and audited.
COMMITTEE_TYPES = frozenset(
    {
        "Measure",
        "Library",
        "Organization",
        "Location",
        "HealthcareService",
        "CodeSystem",
        "ValueSet",
        "ConceptMap",
        "NamingSystem",
        "OperationDefinition",
        "StructureDefinition",
        "SearchParameter",
        "CapabilityStatement",
    }
)
_CLINICAL = frozenset({"TREAT", "ETREAT", "COC", "CAREMGT", "PUBHLTH", "POPHLTH"})

ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role("hospital", "TREAT", _CLINICAL, "system/*.cruds", emergency=True),
        Role("health-centre", "TREAT", _CLINICAL, "system/*.cruds", emergency=True),
        Role("childcare", "COC", frozenset({"COC", "CAREMGT"}), "system/*.cruds"),
        Role("school", "COC", frozenset({"COC"}), "system/*.cruds"),
        Role("social-worker", "CAREMGT", frozenset({"CAREMGT", "COC", "HLEGAL"}), "system/*.cruds"),
        Role(
            "researcher",
            "HRESCH",
            frozenset({"HRESCH"}),
            "system/*.rs system/Group.cruds",
            read_only=True,
            # Cohorts: a research project defines its own Groups (member lists or member-filter
            # criteria) and exports them de-identified; a Group is visible to its writer only.
            writable_types=frozenset({"Group"}),
            denied_types=IDENTIFIED_TYPES | {"AuditEvent"},
        ),
        Role(
            "auditor",
            "HOPERAT",
            frozenset({"HOPERAT"}),
            "system/AuditEvent.rs",
            read_only=True,
            only_types=frozenset({"AuditEvent"}),
        ),
        Role(
            "committee",
            "POPHLTH",
            frozenset({"POPHLTH"}),
            "system/Measure.rs system/Organization.rs system/Location.rs",
            read_only=True,
            only_types=COMMITTEE_TYPES,
            aggregates_only=True,
        ),
        Role(
            "steward",
            "HOPERAT",
            frozenset({"HOPERAT"}),
            "system/Patient.rs system/RelatedPerson.rs",
            read_only=True,
            only_types=IDENTITY_TYPES,
        ),
        Role("admin", "HOPERAT", frozenset({"HOPERAT"}), "system/*.cruds", unrestricted=True),
    )
}


def may_steward_identity(role: Role) -> bool:
    """Who may link, unlink, merge and review children's records (``fhir_server.identity``)."""
    return role.unrestricted or role.name == "steward"


def get_role(name: str) -> Role:
    try:
        return ROLES[name]
    except KeyError:
        raise ValueError(f"unknown role '{name}' (one of {', '.join(ROLES)})") from None


def type_allowed(role: Role, resource_type: str, letter: str) -> bool:
    """The role's cap, applied on top of the token's scopes."""
    if role.read_only and letter in "cud" and resource_type not in role.writable_types:
        return False
    if role.only_types is not None and resource_type not in role.only_types:
        return False
    if resource_type in role.denied_types:
        return False
    # AuditEvents are the server's record: no client writes them, and only auditors and admins read them.
    if resource_type == "AuditEvent":
        return letter in "rs" and (role.unrestricted or role.only_types is not None)
    return True
