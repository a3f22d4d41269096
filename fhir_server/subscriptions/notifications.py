"""Notification Bundles in the R5 Subscriptions Backport shape for R4.

A notification is a ``history`` Bundle whose first entry is a ``Parameters`` resource (profile
backport-subscription-status-r4) saying which subscription, its status, the notification type
(handshake, heartbeat, event-notification, query-status, query-event), how many events the
subscription has had since it started and, per event, its number, time and focus. A receiver that
sees a number jump knows it missed events and can ask for them (``$events``). With ``id-only`` or
``full-resource`` content the focus is named; ``full-resource`` adds an entry with the resource
itself, only where the subscriber's agency may see it (otherwise the entry is left out and the
focus stays, as with ``id-only``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fhir_server.storage.base import OutboxEvent, instant_now
from fhir_server.subscriptions.model import NOTIFICATION_PROFILE, STATUS_PROFILE


@dataclass(frozen=True)
class Focus:
    """What a notification says about one event's resource."""

    event: OutboxEvent
    resource: dict[str, Any] | None = None  # included only for full-resource content it may see


def _event_part(base_url: str, focus: Focus, content: str) -> dict[str, Any]:
    payload = focus.event.payload
    parts: list[dict[str, Any]] = [
        {"name": "event-number", "valueString": str(focus.event.number)},
        {"name": "timestamp", "valueInstant": payload.get("timestamp") or focus.event.recorded},
    ]
    if content != "empty":
        parts.append({"name": "focus", "valueReference": {"reference": f"{base_url}/{payload['focus']}"}})
    return {"name": "notification-event", "part": parts}


def bundle(
    *,
    base_url: str,
    subscription_id: str,
    status: str,
    kind: str,
    events_since_start: int,
    foci: list[Focus] = (),  # type: ignore[assignment]
    content: str = "id-only",
    errors: list[str] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """One notification (or $status / $events answer) as a history Bundle."""
    status_id = str(uuid.uuid4())
    parameters: list[dict[str, Any]] = [
        {
            "name": "subscription",
            "valueReference": {"reference": f"{base_url}/Subscription/{subscription_id}"},
        },
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
    ]
    if kind not in ("handshake",):
        parameters.append({"name": "events-since-subscription-start", "valueString": str(events_since_start)})
    parameters.extend(_event_part(base_url, f, content) for f in foci)
    parameters.extend({"name": "error", "valueCodeableConcept": {"text": e}} for e in errors)
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status_id}",
            "resource": {
                "resourceType": "Parameters",
                "id": status_id,
                "meta": {"profile": [STATUS_PROFILE]},
                "parameter": parameters,
            },
            "request": {"method": "GET", "url": f"{base_url}/Subscription/{subscription_id}/$status"},
            "response": {"status": "200"},
        }
    ]
    if content != "empty":
        for focus in foci:
            payload = focus.event.payload
            method = str(payload.get("method", "PUT"))
            entry: dict[str, Any] = {"fullUrl": f"{base_url}/{payload['focus']}"}
            if content == "full-resource" and focus.resource is not None and method != "DELETE":
                entry["resource"] = focus.resource
            entry["request"] = {
                "method": "POST" if method == "POST" else method,
                "url": str(payload["focus"]),
            }
            status_code = {"POST": "201", "DELETE": "204"}.get(method, "200")
            entry["response"] = {"status": status_code}
            entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": instant_now(),
        "entry": entries,
    }
