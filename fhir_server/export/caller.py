"""Who asked for an export, and what they may see while it runs in the background.

The job records the caller at kick-off (client, agency, role, token scopes, purpose of use). Every time
the job starts or resumes, the caller's restriction is rebuilt from server-held authority as it is
*then*: the client must still be registered (its current role and agency count), and the children's
Consents are read afresh, so a withdrawal stops further data from leaving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fhir_server.interactions.errors import FhirError
from fhir_server.search.access import Access, Grant
from fhir_server.security import roles
from fhir_server.security.access import build_access, patient_links
from fhir_server.security.agencies import AgencyRegistry
from fhir_server.security.clients import ClientRegistry
from fhir_server.security.consent import AccessRequest, ConsentBook
from fhir_server.security.scopes import ScopeSet
from fhir_server.security.tokens import Principal

RESEARCHER = "researcher"


@dataclass(frozen=True)
class Caller:
    """The caller as recorded in the job (plain JSON)."""

    client_id: str
    organization: str
    role: str
    scopes: str
    purpose: str
    agency_type: str | None = None
    agency_ids: tuple[str, ...] = ()
    project: str = ""  # from the client registry (researchers' pseudonym scope)

    def record(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "client_id": self.client_id,
            "organization": self.organization,
            "role": self.role,
            "scopes": self.scopes,
            "purpose": self.purpose,
            "agency_type": self.agency_type,
            "agency_ids": list(self.agency_ids),
        }

    @classmethod
    def from_record(cls, data: dict[str, Any] | None) -> Caller | None:
        if data is None:
            return None
        return cls(
            client_id=data["client_id"],
            organization=data["organization"],
            role=data["role"],
            scopes=data["scopes"],
            purpose=data["purpose"],
            agency_type=data.get("agency_type"),
            agency_ids=tuple(data.get("agency_ids") or ()),
            project=str(data.get("project") or ""),
        )

    @property
    def researcher(self) -> bool:
        return self.role == RESEARCHER


async def from_principal(store: Any, principal: Principal | None, purpose: str | None) -> Caller | None:
    """The caller of a kick-off request (None when auth is off)."""
    if principal is None:
        return None
    record = await ClientRegistry(store).get(principal.client_id)
    return Caller(
        project=str(getattr(record, "project", "") or ""),
        client_id=principal.client_id,
        organization=principal.organization,
        role=principal.role.name,
        scopes=str(principal.scopes),
        purpose=purpose or principal.role.purpose,
        agency_type=principal.agency_type,
        agency_ids=tuple(sorted(principal.agency_ids)),
    )


async def current_principal(store: Any, caller: Caller) -> Principal:
    """The caller as the registry knows it now; 403 when the client was removed or changed agency."""
    record = await ClientRegistry(store).get(caller.client_id)
    if record is None:
        raise FhirError(403, f"Client '{caller.client_id}' is no longer registered", code="forbidden")
    if record.organization != caller.organization:
        raise FhirError(403, f"Client '{caller.client_id}' now belongs to another agency", code="forbidden")
    agency = await AgencyRegistry(store).get(record.organization)  # what the agency is today
    return Principal(
        client_id=record.id,
        name=record.name,
        organization=record.organization,
        agency_type=agency.agency_type if agency is not None else None,
        role=roles.get_role(record.role),
        # The token's scopes, within what the registry allows the client today.
        scopes=ScopeSet.parse(caller.scopes).within(record.scope_set),
        token_id="",
        agency_ids=frozenset(agency.identifiers) if agency is not None else frozenset(),
    )


async def restriction(
    store: Any, caller: Caller | None, deidentify: bool, consents: ConsentBook | None = None
) -> tuple[Access | None, Principal | None]:
    """The caller's ``Access`` now (None: sees everything), and the principal it was built for.

    A de-identified export for a researcher also covers the children's own Patient resources (never
    otherwise readable by that role) where a Consent permits research on demographics: they leave
    the server only through de-identification.
    """
    if caller is None:
        return None, None
    principal = await current_principal(store, caller)
    role = principal.role
    if getattr(role, "aggregates_only", False):
        raise FhirError(
            403, f"Role '{role.name}' sees aggregated figures only, never records", code="forbidden"
        )
    if caller.purpose not in role.purposes or caller.purpose == "ETREAT":
        raise FhirError(
            403, f"Purpose of use '{caller.purpose}' does not allow a bulk export", code="forbidden"
        )
    patients: dict[str, frozenset[str]] = {}
    golden: frozenset[str] = frozenset()
    if not role.unrestricted and role.only_types is None:
        # As for every read: one child across agencies (fhir_server.identity), its Consents decided
        # over all its records, and the golden records of the children the caller's agency serves.
        from fhir_server.identity.book import current

        children = await current(store)
        golden = children.served(principal.organization)
        request = AccessRequest(
            principal.organization,
            principal.agency_type,
            caller.purpose,
            int(time.time() * 1000),
            principal.agency_ids,
        )
        patients = await (consents or ConsentBook()).patients_by_class(store, request, children)
    access = build_access(principal, patients, golden=golden)
    if access is not None and deidentify and caller.researcher and principal.scopes.allows("Patient", "r"):
        demographics = patients.get("demographics", frozenset())
        access = Access(
            types=(access.types or frozenset()) | {"Patient"},
            open_types=access.open_types,
            owner_system=access.owner_system,
            owner_code=access.owner_code,
            owner_keys=access.owner_keys,
            grants=(*access.grants, Grant("Patient", patient_links()["Patient"], demographics)),
        )
    return access, principal


def readable(access: Access | None, resource_type: str) -> bool:
    return access is None or access.types is None or resource_type in access.types
