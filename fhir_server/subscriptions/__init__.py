"""R4 Subscriptions with notifications in the R5 Subscriptions Backport shape, never lost.

- ``model``: a Subscription as the server reads it (criteria, channel, payload content, headers,
  heartbeat); ``endpoints``: where notifications may go (https, public addresses: no SSRF).
- ``prepare_subscription`` (write path): the write-time check (422 naming the element) and the
  status the server manages: a client asks (``requested``) or switches off (``off``); the server
  makes it ``active`` after a successful handshake and ``error`` when delivery keeps failing.
- ``record_events`` (write path, inside the write's transaction): one outbox event per subscription
  a version matches (``engine``, ``matching``, ``audience``), so an event exists exactly when its
  write committed.
- ``dispatcher``: the background job that delivers them (at least once, exponential back-off for a
  configurable time, then ``error``), sends handshakes and heartbeats; ``notifications`` builds the
  history Bundles; ``status``: ``$status`` and ``$events``; ``websocket``: the websocket channel.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.interactions.errors import FhirError
from fhir_server.storage.base import StoredResource, StoreTransaction
from fhir_server.subscriptions import endpoints, matching, model
from fhir_server.subscriptions.audience import SUBSCRIBER_TAG
from fhir_server.subscriptions.engine import engine_for

__all__ = ["prepare_subscription", "record_events"]


async def record_events(
    tx: StoreTransaction, stored: StoredResource, current: StoredResource | None, index: Any
) -> None:
    """Record, in ``tx``, the events this version causes (see ``engine``)."""
    await engine_for(tx.store).record(tx, stored, current, index)


def _set_tag(resource: dict[str, Any], system: str, code: str | None) -> None:
    from fhir_server.workflow.referrals import set_tag

    set_tag(resource, system, code)


async def prepare_subscription(
    settings: Any, tx: StoreTransaction, resource: dict[str, Any], current: StoredResource | None
) -> set[str]:
    """Check a Subscription a client writes and set what the server manages; returns changed members."""
    parsed = model.parse(resource)
    conditions = model.conditions(parsed)  # the criteria must be a search this server can run
    principal = getattr(tx, "principal", None)
    if principal is not None and not principal.role.unrestricted and matching.needs_store(conditions):
        # Matched by the server without the subscriber's restrictions, a chain or _has would tell it
        # about resources it may not see (a hidden child's name behind its own Task).
        raise FhirError(
            422,
            "Subscription.criteria: chained parameters and _has are not allowed in an agency's"
            " subscription (subscribe to the resource itself, e.g. Task?owner=Organization/ID)",
            code="invalid",
            expression=["Subscription.criteria"],
        )
    if parsed.channel == "rest-hook":
        assert parsed.endpoint is not None
        try:
            await endpoints.resolve(parsed.endpoint, endpoints.EndpointPolicy.from_settings(settings))
        except endpoints.EndpointUnresolved:
            pass  # DNS may be down or not yet set up: every delivery checks the addresses again
        except endpoints.EndpointRefused as refused:
            raise FhirError(
                422,
                f"Subscription.channel.endpoint: {refused}",
                code="invalid",
                expression=["Subscription.channel.endpoint"],
            ) from None
    previous = orjson.loads(current.body) if current is not None and not current.deleted else None
    before = previous.get("status") if previous else None
    asked = resource.get("status")
    same_setup = previous is not None and all(
        previous.get(k) == resource.get(k) for k in ("criteria", "channel", "end")
    )
    if asked == "off":
        status = "off"
    elif asked in ("active", "error") and before == asked and same_setup:
        status = asked  # an unchanged subscription stays as the server left it
    else:
        status = "requested"  # the server activates it after a successful handshake
    changed = set()
    if status != asked:
        resource["status"] = status
        changed.add("status")
    kept_error = previous.get("error") if previous and status == "error" else None
    if resource.get("error") != kept_error:
        if kept_error is None:
            resource.pop("error", None)
        else:
            resource["error"] = kept_error
        changed.add("error")
    # Whose subscription it is: the client that wrote it; a client of another agency (an administrator
    # fixing it) leaves it the agency's, so nobody widens what the agency's endpoint is told.
    subscriber = principal.client_id if principal is not None else None
    if previous is not None and principal is not None:
        from fhir_server.security.access import owner_of
        from fhir_server.subscriptions.engine import server_tag

        owner = owner_of(previous)
        if owner is not None and owner != principal.organization:
            subscriber = server_tag(previous, SUBSCRIBER_TAG)
    _set_tag(resource, SUBSCRIBER_TAG, subscriber)
    return changed
