"""Referral bodies as agencies send them: a TH Referral (ServiceRequest) and its TH Referral Task."""

from __future__ import annotations

from typing import Any

from fhir_server import canonical

REFERRAL = canonical.structure_definition(canonical.PROFILE_REFERRAL)
REFERRAL_TASK = canonical.structure_definition(canonical.PROFILE_REFERRAL_TASK)


def service_request(
    child: str,
    requester: str,
    performer: dict[str, Any] | str,
    *,
    category: str = "development",
    reason: str = "developmental-delay",
    priority: str = "routine",
    authored: str = "2026-11-20T09:00:00+07:00",
) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "meta": {"profile": [REFERRAL]},
        "status": "active",
        "intent": "order",
        "category": [
            {"coding": [{"system": canonical.code_system(canonical.CS_REFERRAL_CATEGORY), "code": category}]}
        ],
        "priority": priority,
        "subject": {"reference": f"Patient/{child}"},
        "authoredOn": authored,
        "requester": {"reference": requester},
        "performer": [performer if isinstance(performer, dict) else {"reference": performer}],
        "reasonCode": [
            {"coding": [{"system": canonical.code_system(canonical.CS_REFERRAL_REASON), "code": reason}]}
        ],
    }


def task(
    child: str,
    request_id: str,
    requester: str,
    owner: dict[str, Any] | str,
    *,
    status: str = "requested",
    authored: str = "2026-11-20T09:00:00+07:00",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "meta": {"profile": [REFERRAL_TASK]},
        "basedOn": [{"reference": f"ServiceRequest/{request_id}"}],
        "status": status,
        "intent": "order",
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
        "focus": {"reference": f"ServiceRequest/{request_id}"},
        "for": {"reference": f"Patient/{child}"},
        "authoredOn": authored,
        "requester": {"reference": requester},
        "owner": owner if isinstance(owner, dict) else {"reference": owner},
        **extra,
    }


def moved(current: dict[str, Any], status: str, **changes: Any) -> dict[str, Any]:
    """The Task as the owner sends it back with a new status (server tags are the server's to set)."""
    body = {k: v for k, v in current.items() if k != "meta"}
    profile = current.get("meta", {}).get("profile")
    if profile:
        body["meta"] = {"profile": profile}
    return {**body, "status": status, **changes}
