"""Whom a subscription notifies, and what that agency may see of a resource.

A Subscription belongs to the client that wrote it (server tag ``subscriber``) and its agency (the
writing-agency tag). What it is told comes from the server's registries, never from the Subscription:
the client's role and scopes (client registry), its agency's type and identifiers (agency registry)
and the consents counted for that agency (the same ``ConsentBook`` rules as a request). An event is
recorded for a subscription only when its agency may see the resource, or when the resource is
addressed to that agency (a referral Task it is assigned to, a ServiceRequest it is to perform, a
Communication sent to it): a hidden resource never shows up as a notification, not even as an id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fhir_server import canonical
from fhir_server.search.access import Access
from fhir_server.security import access as acc
from fhir_server.security import roles
from fhir_server.security.agencies import AgencyRegistry
from fhir_server.security.clients import ClientRegistry
from fhir_server.security.consent import AccessRequest, ConsentBook
from fhir_server.security.scopes import ScopeSet
from fhir_server.security.tokens import Principal

SUBSCRIBER_TAG = canonical.tag_system("subscriber")
# Elements that address a resource to an agency: that agency hears about it (id only unless it may see it).
ADDRESSED_TO: dict[str, tuple[str, ...]] = {
    "Task": ("owner",),
    "ServiceRequest": ("performer",),
    "Communication": ("recipient",),
    "CommunicationRequest": ("recipient",),
}
_TTL = 5.0  # seconds an audience's registry view is reused (consents are checked on every use)


@dataclass
class Audience:
    """One subscriber: None ``principal`` means the server's operator (written with auth off or by an
    in-process tool), who may see everything."""

    principal: Principal | None
    built: float

    @property
    def organization(self) -> str | None:
        return self.principal.organization if self.principal else None


class Audiences:
    """Audiences of one store, built from its registries (one per engine)."""

    def __init__(self) -> None:
        self.consents = ConsentBook()
        self._cache: dict[str, Audience | None] = {}
        self._built: dict[str, float] = {}

    async def get(self, store: Any, subscriber: str | None) -> Audience | None:
        """The audience of a subscription's client; None when the client is no longer registered."""
        if subscriber is None:
            return Audience(None, time.monotonic())
        now = time.monotonic()
        if subscriber in self._cache and now - self._built.get(subscriber, 0) < _TTL:
            return self._cache[subscriber]
        client = await ClientRegistry(store).get(subscriber)
        audience = None
        if client is not None:
            agency = await AgencyRegistry(store).get(client.organization)
            principal = Principal(
                client_id=client.id,
                name=client.name,
                organization=client.organization,
                agency_type=agency.agency_type if agency else None,
                role=roles.get_role(client.role),
                scopes=ScopeSet.parse(client.scopes),
                token_id="",
                agency_ids=frozenset(agency.identifiers) if agency else frozenset(),
            )
            audience = Audience(principal, now)
        self._cache[subscriber] = audience
        self._built[subscriber] = now
        return audience

    async def access(self, store: Any, audience: Audience) -> Access | None:
        """The audience's restriction right now (consents as they stand at this moment)."""
        principal = audience.principal
        if principal is None:
            return None
        patients: dict[str, frozenset[str]] = {}
        role = principal.role
        if not role.unrestricted and role.only_types is None:
            request = AccessRequest(
                principal.organization,
                principal.agency_type,
                role.purpose,
                int(time.time() * 1000),
                principal.agency_ids,
            )
            patients = await self.consents.patients_by_class(store, request)
        return acc.build_access(principal, patients)


def addressed_to(resource_type: str, resource: dict[str, Any], organization: str | None) -> bool:
    if organization is None:
        return False
    for element in ADDRESSED_TO.get(resource_type, ()):
        value = resource.get(element)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and item.get("reference") == organization:
                return True
    return False
