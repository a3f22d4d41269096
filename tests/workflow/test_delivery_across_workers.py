"""Two server processes share the port and the store (``--workers 2``): a subscription activated by the
one holding the delivery lease counts in the other from its next write on, so no event written after
the client saw ``active`` is lost, whichever process took the write."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from fhir_server.subscriptions import model
from tests.conftest import free_port
from tests.workflow.receiver import Receiver
from tests.workflow.test_delivery_survives_a_crash import _events, _server, _until


def test_every_write_after_activation_is_notified(tmp_path: Path, receiver: Receiver) -> None:
    with _server(tmp_path / "store.sqlite", free_port(), workers=2) as (_, base):
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "every new referral",
            "criteria": "Task?status=requested",
            "channel": {
                "type": "rest-hook",
                "endpoint": receiver.url(),
                "payload": "application/fhir+json",
                "_payload": {"extension": [{"url": model.EXT_PAYLOAD_CONTENT, "valueCode": "id-only"}]},
            },
        }
        # Both processes take writes (concurrent connections) and so hold their view of the
        # subscriptions (none recording yet) just before the subscription is created.
        _post_many(base, {"resourceType": "Task", "status": "draft", "intent": "order"}, 16)
        sid = httpx.post(f"{base}/Subscription", json=subscription, timeout=10).json()["id"]
        _until(lambda: httpx.get(f"{base}/Subscription/{sid}").json()["status"] == "active", 30)
        _post_many(base, {"resourceType": "Task", "status": "requested", "intent": "order"}, 16)
        numbers = _until(lambda: len({n for n, _ in _events(receiver)}) >= 16 and _events(receiver), 60)
        assert sorted({int(n) for n, _ in numbers}) == list(range(1, 17))


def _post_many(base: str, resource: dict[str, object], count: int) -> None:
    def post(_: int) -> int:
        with httpx.Client(timeout=10) as client:  # a new connection each
            return client.post(f"{base}/Task", json=resource).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(post, range(count))) == {201}
