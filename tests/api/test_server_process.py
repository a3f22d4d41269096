"""The real thing: `termtem serve` under uvicorn on a loopback port, spoken to over TCP."""

from __future__ import annotations

import httpx


def test_server_serves_fhir_over_tcp(live_server: str) -> None:
    capability = httpx.get(f"{live_server}/metadata").json()
    assert capability["resourceType"] == "CapabilityStatement"
    assert capability["fhirVersion"] == "4.0.1"
    created = httpx.post(f"{live_server}/Patient", json={"resourceType": "Patient", "gender": "female"})
    assert created.status_code == 201
    assert created.headers["location"].startswith(f"{live_server}/Patient/")
    read = httpx.get(created.headers["location"].rsplit("/_history", 1)[0])
    assert read.json()["gender"] == "female"
    assert read.headers["cache-control"] == "no-store"
