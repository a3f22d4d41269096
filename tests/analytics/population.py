"""A generated population written straight into a store (no HTTP, no validation: test data only)."""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.interactions.writes import now_instant, stamp
from fhir_server.search.extract import extract_index
from fhir_server.security.access import OWNER_TAG_SYSTEM
from fhir_server.storage.base import StoredResource
from fhir_server.synthetic.population import generate


def _owner(resource: dict[str, Any]) -> str | None:
    """The agency that would have written the record: its performer, requester or managing agency."""
    for key in ("performer", "requester", "managingOrganization", "organization"):
        value = resource.get(key)
        first = value[0] if isinstance(value, list) and value else value
        if isinstance(first, dict):
            ref = first.get("reference") or (first.get("actor") or {}).get("reference")
            if isinstance(ref, str) and ref.startswith("Organization/"):
                return ref
    return None


async def load_population(
    store: Any, seed: int, children: int, *, tag_owners: bool = False, consents: bool = True
) -> list[dict[str, Any]]:
    """Write the generated agencies and households in one import; returns every resource written.

    With ``tag_owners`` each record carries the writing-agency tag of the agency that made it, so
    consent-bound callers see their own agency's records; without ``consents`` the guardians' consents
    are left out, so such a caller sees exactly its own agency's records.
    """
    written: list[dict[str, Any]] = []
    versions = []
    when = now_instant()
    for batch in generate(seed, children=children):
        for resource in batch:
            if not consents and resource["resourceType"] == "Consent":
                continue
            resource = dict(resource)
            owner = _owner(resource) if tag_owners else None
            if owner:
                resource["meta"] = {
                    **resource.get("meta", {}),
                    "tag": [{"system": OWNER_TAG_SYSTEM, "code": owner}],
                }
            body = stamp(None, resource, resource["resourceType"], resource["id"], 1, when)
            versions.append(
                (
                    StoredResource(resource["resourceType"], resource["id"], 1, when, "PUT", body),
                    extract_index(resource),
                )
            )
            written.append(orjson.loads(body))
    await store.import_versions(versions)
    return written
