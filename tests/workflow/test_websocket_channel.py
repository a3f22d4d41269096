"""The websocket channel: a binding token from $get-ws-binding-token, a bind, the handshake and event
notifications in the Backport shape; an unknown token is refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from fhir_server.api.app import create_app
from tests.conftest import make_settings
from tests.workflow.receiver import status_of


def test_a_websocket_receives_its_subscriptions_events(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, subscription_delivery=True, public_base_url="http://testserver/fhir")
    with TestClient(create_app(settings)) as client:
        sub = client.post(
            "/fhir/Subscription",
            json={
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "a live screen",
                "criteria": "Patient?family=Somsri",
                "channel": {"type": "websocket", "payload": "application/fhir+json"},
            },
        ).json()
        deadline = time.monotonic() + 60
        while client.get(f"/fhir/Subscription/{sub['id']}").json()["status"] != "active":
            assert time.monotonic() < deadline, "the subscription was not activated"
            time.sleep(0.2)
        answer = client.post(f"/fhir/Subscription/{sub['id']}/$get-ws-binding-token").json()
        values = {
            p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in answer["parameter"]
        }
        assert values["websocket-url"] == "ws://testserver/fhir/websocket"
        with client.websocket_connect("/fhir/websocket") as socket:
            socket.send_text(f"bind-with-token {values['token']}")
            handshake = json.loads(socket.receive_text())
            assert status_of(handshake)["type"] == "handshake"
            patient = client.post(
                "/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Somsri"}]}
            ).json()
            client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Other"}]})
            note = json.loads(socket.receive_text())
            while status_of(note)["type"] == "heartbeat":
                note = json.loads(socket.receive_text())
            event = status_of(note)["events"][0]
            assert status_of(note)["type"] == "event-notification" and event["event-number"] == "1"
            assert event["focus"]["reference"] == f"http://testserver/fhir/Patient/{patient['id']}"
            assert note["entry"][1]["resource"]["id"] == patient["id"]
        with client.websocket_connect("/fhir/websocket") as socket:
            socket.send_text("bind-with-token not-a-token")
            assert "unknown" in socket.receive_text()
            with pytest.raises(WebSocketDisconnect):
                socket.receive_text()
