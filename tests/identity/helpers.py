"""Small builders shared by the identity tests: Thai children as agencies write them."""

from __future__ import annotations

from typing import Any

from fhir_server import canonical
from fhir_server.identity.model import TAG_SYSTEM

CID = canonical.CID_SYSTEM
GOLDEN_TAG = f"{TAG_SYSTEM}|golden"


def child(
    cid: str | None = "1103700123458",
    *,
    given: str = "กิตติ",
    family: str = "ศรีสุข",
    prefix: str = "ด.ช.",
    gender: str = "male",
    birth: str = "2021-03-15",
    extra_ids: list[dict[str, Any]] | None = None,
    **more: Any,
) -> dict[str, Any]:
    identifiers = [{"system": CID, "value": cid}] if cid else []
    identifiers += extra_ids or []
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [
            {"use": "official", "text": f"{prefix}{given} {family}", "given": [given], "family": family}
        ],
        "gender": gender,
        "birthDate": birth,
        **more,
    }
    if identifiers:
        body["identifier"] = identifiers
    return body


def tags(resource: dict[str, Any]) -> set[str]:
    return {f"{t['system']}|{t['code']}" for t in resource.get("meta", {}).get("tag", [])}


def link_states(golden: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """source id -> the th-identity-link parts of its Patient.link."""
    out = {}
    for link in golden.get("link", []):
        if link.get("type") != "seealso":
            continue
        parts = {}
        for ext in link.get("extension", []):
            for part in ext.get("extension", []):
                parts[part["url"]] = next(v for k, v in part.items() if k.startswith("value"))
        out[link["other"]["reference"].split("/", 1)[1]] = parts
    return out


def sources_of(element: dict[str, Any]) -> set[str]:
    return {
        e["valueReference"]["reference"]
        for e in element.get("extension", [])
        if e["url"].endswith("/th-identity-source")
    }
