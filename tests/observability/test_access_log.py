"""One access line per request, with the request id, caller and agency, and nothing identifying."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from fhir_server.observability.logs import JsonFormatter, PlainFormatter, RequestIdFilter
from fhir_server.observability.redact import loggable_target, redact_url
from tests.conftest import make_settings, running_app
from tests.security.conftest import World

CID = "1101700203451"
NAME = "สมศรี"


class Captured:
    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []
        self.plain = io.StringIO()
        self.json = io.StringIO()

    def clear(self) -> None:
        self.records.clear()
        for stream in (self.plain, self.json):
            stream.seek(0)
            stream.truncate()

    def access(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == "termtem.access"]

    def text(self) -> str:
        return self.plain.getvalue() + self.json.getvalue()


class _Keep(logging.Handler):
    def __init__(self, into: Captured) -> None:
        super().__init__()
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.records.append(record)


@pytest.fixture
def logs() -> Iterator[Captured]:
    """Every termtem log record, also rendered by both formatters (as `serve` would print them)."""
    captured = Captured()
    logger = logging.getLogger("termtem")
    handlers: list[logging.Handler] = [_Keep(captured)]
    for stream, formatter in ((captured.plain, PlainFormatter()), (captured.json, JsonFormatter())):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handlers.append(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    for handler in handlers:
        handler.addFilter(RequestIdFilter())
        logger.addHandler(handler)
    yield captured
    for handler in handlers:
        logger.removeHandler(handler)
    logger.setLevel(old_level)


async def test_access_lines_carry_ids_but_no_identifiers_bodies_or_tokens(
    tmp_path: Path, logs: Captured
) -> None:
    async with running_app(make_settings(tmp_path, auth=True, data_dir=tmp_path / "data")) as (app, http):
        world = World(app, http, tmp_path)
        hospital = await world.caller("hosp-app", "Organization/hosp-1", "hospital")
        logs.clear()
        created = await hospital.post(
            "Patient",
            {
                "resourceType": "Patient",
                "identifier": [{"system": "https://terms.sil-th.org/id/th-cid", "value": CID}],
                "name": [{"given": [NAME]}],
            },
            x_request_id="trace-0001",
        )
        assert created.status_code == 201
        assert created.headers["x-request-id"] == "trace-0001"
        found = await hospital.get(
            f"Patient?identifier=https://terms.sil-th.org/id/th-cid|{CID}&name={NAME}&_count=5"
        )
        assert found.status_code == 200 and found.json()["entry"][0]["resource"]["id"]
        generated = found.headers["x-request-id"]
        assert len(generated) == 32 and generated != "trace-0001"
        refused = await http.get("Patient", headers={"Authorization": "Bearer not-a-token"})
        assert refused.status_code == 401

    lines = logs.access()
    assert [r.status for r in lines] == [201, 200, 401]  # type: ignore[attr-defined]
    post, search, denied = lines
    assert post.request_id == "trace-0001" and search.request_id == generated  # type: ignore[attr-defined]
    assert post.client_id == "hosp-app" and post.agency == "Organization/hosp-1"  # type: ignore[attr-defined]
    assert post.interaction == "create" and search.interaction == "search-type"  # type: ignore[attr-defined]
    assert search.path == "/fhir/Patient?identifier=*&name=*&_count=5"  # type: ignore[attr-defined]
    assert denied.client_id is None  # type: ignore[attr-defined]
    text = logs.text()
    for secret in (CID, NAME, hospital.token, "not-a-token", "Bearer"):
        assert secret not in text, secret
    json_lines = [orjson.loads(line) for line in logs.json.getvalue().splitlines()]
    access = [j for j in json_lines if j["logger"] == "termtem.access"]
    assert access[0]["request_id"] == "trace-0001" and access[0]["status"] == 201
    assert {"method", "path", "status", "duration_ms", "client_id", "agency"} <= set(access[0])
    assert "rid=trace-0001" in logs.plain.getvalue()


async def test_a_bad_request_id_is_replaced(tmp_path: Path, logs: Captured) -> None:
    async with running_app(make_settings(tmp_path)) as (_, http):
        reply = await http.get("metadata", headers={"X-Request-ID": "two words; and <script>"})
    assert reply.status_code == 200
    assert len(reply.headers["x-request-id"]) == 32 and " " not in reply.headers["x-request-id"]


async def test_a_crash_is_a_500_outcome_logged_once_with_its_request_id(
    tmp_path: Path, logs: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fhir_server.interactions import read

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("store exploded")

    monkeypatch.setattr(read, "read", broken)
    async with running_app(make_settings(tmp_path)) as (_, http):
        reply = await http.get("Patient/x", headers={"X-Request-ID": "crash-42"})
    assert reply.status_code == 500
    assert reply.json()["resourceType"] == "OperationOutcome"
    assert reply.headers["x-request-id"] == "crash-42"
    errors = [r for r in logs.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].request_id == "crash-42"  # type: ignore[attr-defined]
    assert errors[0].exc_info is not None
    assert [r.status for r in logs.access()] == [500]  # type: ignore[attr-defined]


def test_loggable_target_and_redacted_urls() -> None:
    assert loggable_target("/fhir/Patient", "_summary=count&birthdate=ge2020") == (
        "/fhir/Patient?_summary=count&birthdate=*"
    )
    assert loggable_target(f"/fhir/Patient/{CID}", "") == "/fhir/Patient/*************"
    assert loggable_target("/fhir/Patient/a\nFORGED 200", "") == "/fhir/Patient/a%0AFORGED%20200"
    assert redact_url("mongodb://admin:S3cretPass@db1,db2/termtem?replicaSet=rs0") == (
        "mongodb://admin:***@db1,db2/termtem?replicaSet=rs0"
    )
    assert "hunter2" not in redact_url("mongodb://db/x?tlsCertificateKeyFilePassword=hunter2&w=1")
    assert redact_url("sqlite:///termtem-data/termtem.sqlite") == "sqlite:///termtem-data/termtem.sqlite"
