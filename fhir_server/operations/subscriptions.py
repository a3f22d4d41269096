"""``Subscription/[id]/$status``, ``$events`` and ``$get-ws-binding-token`` (Subscriptions Backport).

Thin: the answers come from ``fhir_server.subscriptions``; the Subscription is read through the
caller's view of the store (a subscription it may not see answers as unknown).
"""

from __future__ import annotations

from typing import Any

from fhir_server.interactions.errors import bad_request
from fhir_server.operations.registry import OperationRequest, OperationResult, parameter_value
from fhir_server.subscriptions import status, websocket

_EVENTS = ("eventsSinceNumber", "eventsUntilNumber", "content")


def _subscription_id(request: OperationRequest) -> str:
    if request.id is not None:
        return request.id
    value = parameter_value(request.parameters, "id")
    if not isinstance(value, str) or not value:
        raise bad_request(f"${request.name} at type level needs the id of a Subscription", ["id"])
    return value.rsplit("/", 1)[-1]


def _only(request: OperationRequest, allowed: tuple[str, ...]) -> None:
    for p in request.parameters.get("parameter", []) or []:
        name = p.get("name") if isinstance(p, dict) else None
        if name not in allowed:
            raise bad_request(
                f"${request.name} does not take the parameter {name!r}",
                [str(name) if isinstance(name, str) else "Parameters.parameter"],
            )


async def subscription_status(request: OperationRequest) -> OperationResult:
    _only(request, () if request.id is not None else ("id",))
    ctx = request.context
    return OperationResult(await status.status(ctx.store, ctx.store, ctx.base_url, _subscription_id(request)))


async def subscription_events(request: OperationRequest) -> OperationResult:
    _only(request, _EVENTS)
    ctx = request.context
    values: dict[str, Any] = {name: parameter_value(request.parameters, name) for name in _EVENTS}
    bundle = await status.events(
        ctx.store,
        ctx.store,
        ctx.base_url,
        _subscription_id(request),
        since=values["eventsSinceNumber"],
        until=values["eventsUntilNumber"],
        content=values["content"],
    )
    return OperationResult(bundle)


async def ws_binding_token(request: OperationRequest) -> OperationResult:
    _only(request, ())
    ctx = request.context
    parameters = await websocket.binding_token(ctx, _subscription_id(request))
    return OperationResult(parameters)
