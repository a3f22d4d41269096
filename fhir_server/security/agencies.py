"""The agency registry: each agency's type and identifiers, as the server's administrators set them.

Consent provisions name agencies by type ("any school") or by identifier (a MOPH facility code);
what a caller *is* must therefore come from the server's own records, never from an Organization
resource the agency may edit itself. Administrators set it at client registration (``termtem client
add --agency-type``) or with ``termtem agency set``; tokens carry it, so a change applies from each
client's next token. The registry lives in the store's key/value area, beside the client registry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import orjson

from fhir_server import canonical
from fhir_server.security.clients import check_organization
from fhir_server.storage.base import Store

NAMESPACE = "security.agencies"


@dataclass(frozen=True)
class AgencyRecord:
    organization: str  # Organization/ID
    agency_type: str | None  # a th-agency-type code
    identifiers: tuple[str, ...] = ()  # "system|value", e.g. the MOPH facility code

    def claims(self) -> dict[str, Any]:
        """What an access token says about the agency."""
        return {"agency_type": self.agency_type, "agency_ids": list(self.identifiers)}


@cache
def agency_types() -> frozenset[str]:
    """The codes of the th-agency-type CodeSystem we ship."""
    from fhir_server.terminology import code_system

    url = canonical.code_system(canonical.CS_AGENCY_TYPE)
    resource = code_system(url)
    if resource is None:
        raise LookupError(f"the {url} CodeSystem is not shipped")
    return frozenset(c["code"] for c in resource.get("concept", []) if "code" in c)


def check_agency_type(code: str) -> str:
    if code not in agency_types():
        raise ValueError(f"'{code}' is not an agency type (one of {', '.join(sorted(agency_types()))})")
    return code


def check_identifier(value: str) -> str:
    system, sep, code = value.partition("|")
    if not sep or not system.strip() or not code.strip():
        raise ValueError(f"'{value}' is not an identifier written as SYSTEM|VALUE")
    return f"{system.strip()}|{code.strip()}"


def validate(record: AgencyRecord) -> AgencyRecord:
    check_organization(record.organization)
    if record.agency_type is not None:
        check_agency_type(record.agency_type)
    return AgencyRecord(
        record.organization,
        record.agency_type,
        tuple(sorted({check_identifier(i) for i in record.identifiers})),
    )


class AgencyRegistry:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, organization: str) -> AgencyRecord | None:
        data = await self._store.kv_get(NAMESPACE, organization)
        if not data:
            return None
        return AgencyRecord(data["organization"], data.get("agency_type"), tuple(data.get("identifiers", ())))

    async def set(self, record: AgencyRecord) -> AgencyRecord:
        record = validate(record)
        await self._store.kv_put(NAMESPACE, record.organization, asdict(record))
        return record

    async def list(self) -> list[AgencyRecord]:
        return [
            AgencyRecord(v["organization"], v.get("agency_type"), tuple(v.get("identifiers", ())))
            for _, v in await self._store.kv_list(NAMESPACE)
        ]

    async def remove(self, organization: str) -> bool:
        return await self._store.kv_delete(NAMESPACE, organization)


async def claimed_type(store: Store, organization: str) -> str | None:
    """The th-agency-type an Organization resource *claims* for itself: shown to administrators as a
    hint when they confirm a type (``termtem agency list``), never used for access decisions."""
    _, _, oid = organization.partition("/")
    stored = await store.read("Organization", oid)
    if stored is None or stored.deleted:
        return None
    system = canonical.code_system(canonical.CS_AGENCY_TYPE)
    types = orjson.loads(stored.body).get("type")
    for concept in types if isinstance(types, list) else []:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            if isinstance(coding, dict) and coding.get("system") == system and coding.get("code"):
                return str(coding["code"])
    return None
