"""``$status`` and ``$events``: what a subscriber asks when it suspects it missed something.

Both read the Subscription through the caller's view of the store, so a subscription the caller may
not see answers as one that does not exist. ``$status`` says the subscription's status, how many
events it has had and, when delivery is failing, why. ``$events`` returns recorded events by number
(``eventsSinceNumber``, ``eventsUntilNumber``, at most 100 at a time) as a ``query-event`` history
Bundle; with ``full-resource`` content each resource is read through the caller's view too, so only
what the caller may see is included.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.interactions.errors import FhirError, not_found
from fhir_server.subscriptions import notifications
from fhir_server.subscriptions.dispatcher import STATE_KEY, STATE_NAMESPACE, DeliveryState
from fhir_server.subscriptions.engine import read_subscription, stream
from fhir_server.subscriptions.model import CONTENTS, Subscription

MAX_EVENTS = 100


async def _subscription(store: Any, subscription_id: str) -> tuple[Subscription, dict[str, Any]]:
    stored = await store.read("Subscription", subscription_id)
    if stored is None or stored.deleted:
        raise not_found(f"Subscription/{subscription_id} is not known")
    subscription = read_subscription(stored)
    if subscription is None:
        raise FhirError(422, f"Subscription/{subscription_id} cannot be used", code="processing")
    return subscription, orjson.loads(stored.body)


async def status(store: Any, raw_store: Any, base_url: str, subscription_id: str) -> dict[str, Any]:
    subscription, resource = await _subscription(store, subscription_id)
    total = await raw_store.outbox_last(stream(subscription.id))
    states = await raw_store.kv_get(STATE_NAMESPACE, STATE_KEY) or {}
    state = DeliveryState.load(states.get(subscription.id))
    errors = [e for e in (resource.get("error"), state.last_error) if isinstance(e, str) and e]
    return notifications.bundle(
        base_url=base_url,
        subscription_id=subscription.id,
        status=subscription.status,
        kind="query-status",
        events_since_start=total,
        content="empty",
        errors=list(dict.fromkeys(errors)),
    )


def _number(value: Any, name: str) -> int | None:
    if value is None:
        return None
    text = str(value)
    if not text.isdigit():
        raise FhirError(
            400, f"{name} must be an event number (a whole number), not {value!r}", expression=[name]
        )
    return int(text)


async def events(
    store: Any,
    raw_store: Any,
    base_url: str,
    subscription_id: str,
    since: Any = None,
    until: Any = None,
    content: Any = None,
) -> dict[str, Any]:
    subscription, _ = await _subscription(store, subscription_id)
    first = _number(since, "eventsSinceNumber") or 1
    last = _number(until, "eventsUntilNumber")
    if content is not None and content not in CONTENTS:
        raise FhirError(400, f"content must be one of {', '.join(CONTENTS)}", expression=["content"])
    if last is not None and last < first:
        raise FhirError(400, "eventsUntilNumber is below eventsSinceNumber", expression=["eventsUntilNumber"])
    total = await raw_store.outbox_last(stream(subscription.id))
    limit = MAX_EVENTS if last is None else min(MAX_EVENTS, last - first + 1)
    found = await raw_store.outbox_read(stream(subscription.id), after=first - 1, limit=limit)
    wanted = content or subscription.content
    foci = []
    for event in found:
        resource = None
        if wanted == "full-resource":
            rtype, _, rid = str(event.payload["focus"]).partition("/")
            try:
                stored = await store.vread(rtype, rid, int(event.payload.get("version", 0)))
            except FhirError:  # the caller may not see it (or it no longer exists): left out
                stored = None
            if stored is not None and not stored.deleted:
                resource = orjson.loads(stored.body)
        foci.append(notifications.Focus(event, resource))
    return notifications.bundle(
        base_url=base_url,
        subscription_id=subscription.id,
        status=subscription.status,
        kind="query-event",
        events_since_start=total,
        foci=foci,
        content=wanted,
    )
