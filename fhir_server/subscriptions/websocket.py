"""The websocket channel (Subscriptions Backport): a client binds with a short-lived token.

The owner of a ``websocket`` Subscription asks ``Subscription/[id]/$get-ws-binding-token`` (an
authenticated, audited request) and gets a token valid for a few minutes and the websocket URL
(``[base]/websocket``). It connects and sends ``bind-with-token <token>``; the server answers with a
handshake Bundle and then sends, in this process, each new event of the subscription as an
event-notification Bundle (the same shape, numbers and payload rules as rest-hook, full resources
only where the subscriber's agency may see them) and a heartbeat when nothing happened for the
subscription's heartbeat period (60 s by default). A websocket delivers while it is connected: a
client that reconnects sees from the event numbers what it missed and asks ``$events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from fhir_server import fhirjson
from fhir_server.interactions.errors import FhirError, not_found
from fhir_server.subscriptions import notifications
from fhir_server.subscriptions.engine import read_subscription, stream

TOKEN_NAMESPACE = "subscriptions.ws-tokens"
TOKEN_SECONDS = 300
DEFAULT_HEARTBEAT = 60
PATH = "/websocket"


async def binding_token(ctx: Any, subscription_id: str) -> dict[str, Any]:
    """A token that binds a websocket to this subscription (the caller must see the subscription)."""
    stored = await ctx.store.read("Subscription", subscription_id)
    if stored is None or stored.deleted:
        raise not_found(f"Subscription/{subscription_id} is not known")
    subscription = read_subscription(stored)
    if subscription is None or subscription.channel != "websocket":
        raise FhirError(
            422,
            f"Subscription/{subscription_id} does not use the websocket channel",
            code="processing",
            expression=["Subscription.channel.type"],
        )
    token = secrets.token_urlsafe(32)
    expires = time.time() + TOKEN_SECONDS
    await ctx.store.kv_put(TOKEN_NAMESPACE, token, {"subscription": subscription_id, "expires": expires})
    base = ctx.base_url
    ws_base = "wss" + base[5:] if base.startswith("https") else "ws" + base[4:]
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "token", "valueString": token},
            {
                "name": "expiration",
                "valueDateTime": datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds"),
            },
            {"name": "subscription", "valueString": f"{base}/Subscription/{subscription_id}"},
            {"name": "websocket-url", "valueUrl": ws_base + PATH},
        ],
    }


async def serve(websocket: WebSocket, store: Any, settings: Any, base_url: str) -> None:
    """One websocket connection: wait for a bind, then send notifications until it closes."""
    await websocket.accept()
    try:
        message = await asyncio.wait_for(websocket.receive_text(), timeout=30)
    except (TimeoutError, WebSocketDisconnect):
        await _close(websocket, 4000, "no bind-with-token message")
        return
    command, _, token = message.strip().partition(" ")
    if command != "bind-with-token" or not token:
        await _close(websocket, 4000, "send 'bind-with-token <token>' (token from $get-ws-binding-token)")
        return
    binding = await store.kv_get(TOKEN_NAMESPACE, token.strip())
    if not binding or binding.get("expires", 0) < time.time():
        await _close(websocket, 4001, "the token is unknown or has expired")
        return
    subscription_id = str(binding["subscription"])
    stored = await store.read("Subscription", subscription_id)
    subscription = read_subscription(stored) if stored is not None else None
    if subscription is None or subscription.channel != "websocket":
        await _close(websocket, 4004, "the subscription no longer exists")
        return
    from fhir_server.subscriptions.dispatcher import load_foci

    cursor = await store.outbox_last(stream(subscription_id))
    await _send(websocket, base_url, subscription_id, "active", "handshake", cursor, [], subscription.content)
    last_sent = time.monotonic()
    heartbeat = subscription.heartbeat or DEFAULT_HEARTBEAT
    seen = await store.outbox_wait(0, timeout=0)
    receiver = asyncio.ensure_future(_drain(websocket))
    try:
        while not receiver.done():
            seen = await store.outbox_wait(seen, timeout=1.0)
            while events := await store.outbox_read(
                stream(subscription_id), after=cursor, limit=subscription.max_count
            ):
                total = await store.outbox_last(stream(subscription_id))
                foci = await load_foci(store, subscription, events)
                await _send(
                    websocket,
                    base_url,
                    subscription_id,
                    "active",
                    "event-notification",
                    total,
                    foci,
                    subscription.content,
                )
                cursor, last_sent = events[-1].number, time.monotonic()
            if time.monotonic() - last_sent >= heartbeat:
                total = await store.outbox_last(stream(subscription_id))
                await _send(websocket, base_url, subscription_id, "active", "heartbeat", total, [], "empty")
                last_sent = time.monotonic()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiver


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive_text()


async def _send(
    websocket: WebSocket,
    base_url: str,
    subscription_id: str,
    status: str,
    kind: str,
    total: int,
    foci: list[notifications.Focus],
    content: str,
) -> None:
    note = notifications.bundle(
        base_url=base_url,
        subscription_id=subscription_id,
        status=status,
        kind=kind,
        events_since_start=total,
        foci=foci,
        content=content,
    )
    await websocket.send_text(fhirjson.dumps(note).decode())


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.send_text(reason)
        await websocket.close(code=code, reason=reason)
