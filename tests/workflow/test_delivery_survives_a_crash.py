"""The real server killed with ``kill -9`` between a write and its delivery, restarted on the same store:
the notification arrives afterwards, with the event number it was recorded with (at least once)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from fhir_server.subscriptions import model
from tests.conftest import free_port
from tests.live import serve
from tests.workflow.receiver import Receiver, status_of


@contextmanager
def _server(store: Path, port: int, workers: int = 2) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    env = {"TERMTEM_SUBSCRIPTION_LOOPBACK": "on", "TERMTEM_SUBSCRIPTION_DELIVERY": "on"}
    with serve(store, env=env, port=port, args=("--workers", str(workers))) as live:
        yield live.process, live.base


def _until(condition: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s")


def _events(receiver: Receiver) -> list[tuple[str, int]]:
    """(event number, HTTP status the receiver answered) of every event notification received."""
    out = []
    for item in list(receiver.received):
        body = item["body"]
        if body and status_of(body)["type"] == "event-notification":
            out.extend((e["event-number"], item["answered"]) for e in status_of(body)["events"])
    return out


def test_a_notification_survives_kill_9(tmp_path: Path, receiver: Receiver) -> None:
    store, port = tmp_path / "store.sqlite", free_port()
    with _server(store, port) as (process, base):
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "referrals to the hospital",
            "criteria": "Task?status=requested",
            "channel": {
                "type": "rest-hook",
                "endpoint": receiver.url(),
                "payload": "application/fhir+json",
                "_payload": {"extension": [{"url": model.EXT_PAYLOAD_CONTENT, "valueCode": "id-only"}]},
            },
        }
        created = httpx.post(f"{base}/Subscription", json=subscription, timeout=10)
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        _until(lambda: httpx.get(f"{base}/Subscription/{sid}").json()["status"] == "active", 30)
        # The receiver is down (answers 500): the event is recorded with the write, not delivered.
        receiver.status = 500
        task = {"resourceType": "Task", "status": "requested", "intent": "order"}
        written = httpx.post(f"{base}/Task", json=task, timeout=10)
        assert written.status_code == 201, written.text
        task_id = written.json()["id"]
        _until(lambda: _events(receiver), 30)  # a delivery was tried, and failed
        assert all(answered == 500 for _, answered in _events(receiver))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    receiver.status = 200
    failed = len(receiver.received)
    with _server(store, port) as (_, base):
        _until(lambda: any(answered == 200 for _, answered in _events(receiver)), 60)
        delivered = [n for n, answered in _events(receiver) if answered == 200]
        assert delivered == ["1"]  # the same number it was recorded with
        later = [r["body"] for r in receiver.received[failed:] if r["answered"] == 200]
        note = next(b for b in later if status_of(b)["type"] == "event-notification")
        assert status_of(note)["events"][0]["focus"]["reference"] == f"{base}/Task/{task_id}"
        replay = httpx.get(f"{base}/Subscription/{sid}/$events").json()
        assert [e["event-number"] for e in status_of(replay)["events"]] == ["1"]
        assert httpx.get(f"{base}/Subscription/{sid}").json()["status"] == "active"
