"""/health, /ready and /metrics (Prometheus text format), and who may read the metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from fhir_server.api.app import create_app
from tests.conftest import BASE, make_settings, running_app
from tests.security.conftest import World

ORIGIN = "http://testserver"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_health_and_ready(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.get(ORIGIN + "/health")).json()["status"] == "pass"
        starting = await http.get(ORIGIN + "/ready")  # the lifespan (store, shipped resources) has not run
        assert starting.status_code == 503 and starting.json()["status"] == "starting"
        async with app.router.lifespan_context(app):
            ready = await http.get(ORIGIN + "/ready")
            assert ready.status_code == 200 and ready.json() == {"status": "ready", "store": "ok"}

            async def down(*args: object) -> None:
                raise ConnectionError("gone")

            app.state.store.backend.kv_get = down
            broken = await http.get(ORIGIN + "/ready")
            assert broken.status_code == 503 and broken.json()["store"] == "not answering"
            assert (await http.get(ORIGIN + "/health")).status_code == 200


async def test_metrics_count_requests_store_calls_and_audit(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path, auth=True, data_dir=tmp_path / "data")) as (app, http):
        caller = await World(app, http, tmp_path).caller("hosp-app", "Organization/hosp-1", "hospital")
        created = await caller.post("Patient", {"resourceType": "Patient", "gender": "female"})
        pid = created.json()["id"]
        assert (await caller.get(f"Patient/{pid}")).status_code == 200
        assert (await caller.get("Patient/missing")).status_code == 404
        assert (await caller.get("Patient/$everything")).status_code in (400, 404)
        reply = await http.get(ORIGIN + "/metrics")
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
        openmetrics = await http.get(ORIGIN + "/metrics", headers={"Accept": "application/openmetrics-text"})
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        samples = _samples(reply.text)
    assert samples[("termtem_http_requests_total", (("interaction", "read"), ("status", "200")))] == 1
    assert samples[("termtem_http_requests_total", (("interaction", "read"), ("status", "404")))] == 1
    assert samples[("termtem_http_requests_total", (("interaction", "create"), ("status", "201")))] == 1
    assert (
        samples[("termtem_http_request_duration_seconds_count", (("interaction", "read"), ("status", "200")))]
        == 1
    )
    assert samples[("termtem_store_operation_duration_seconds_count", (("operation", "read"),))] >= 2
    assert samples[("termtem_store_operation_duration_seconds_count", (("operation", "transaction"),))] >= 1
    assert samples[("termtem_audit_write_duration_seconds_count", ())] >= 4  # one AuditEvent per request
    assert samples[("termtem_audit_backlog", ())] == 0
    assert ("termtem_background_jobs", (("kind", "reindex"), ("state", "running"))) in samples
    labels = {dict(k[1]).get("interaction") for k in samples if k[0] == "termtem_http_requests_total"}
    assert labels <= {"token", "create", "read", "operation:$everything", "metrics"}


async def test_metrics_are_for_loopback_or_the_metrics_token(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, metrics_token="s3cret-scrape")
    app = create_app(settings)

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url=BASE)

    local, remote = client("127.0.0.1"), client("203.0.113.9")
    async with app.router.lifespan_context(app), local, remote:
            assert (await local.get(ORIGIN + "/metrics")).status_code == 200
            proxied = await local.get(ORIGIN + "/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
            assert proxied.status_code == 403  # a reverse proxy on this host forwarded it
            assert (await remote.get(ORIGIN + "/metrics")).status_code == 403
            wrong = await remote.get(ORIGIN + "/metrics", headers={"Authorization": "Bearer guess"})
            assert wrong.status_code == 403
            right = await remote.get(ORIGIN + "/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
            assert right.status_code == 200 and "termtem_http_requests_total" in right.text
            assert (await remote.get(ORIGIN + "/health")).status_code == 200  # health stays public
