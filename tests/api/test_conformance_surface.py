"""What conformance testers and plain HTTP clients expect: warnings for ignored search parameters, 304s,
compression, /metadata's modes and summary, the front page, and raw UTF-8 in request URLs."""

from __future__ import annotations

import gzip
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import orjson

from tests.conftest import make_settings, running_app

ORIGIN = "http://testserver"


def _outcome(bundle: dict) -> list[dict]:
    return [
        issue
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == "outcome"
        for issue in e["resource"]["issue"]
    ]


async def test_unknown_search_parameters_warn_or_fail_when_strict(client: httpx.AsyncClient) -> None:
    await client.post("Task", json={"resourceType": "Task", "status": "requested", "intent": "order"})
    lenient = (await client.get("Task?for=Patient/x&_content=abc&status=requested")).json()
    issues = _outcome(lenient)
    texts = " ".join(i["diagnostics"] for i in issues)
    assert "'for'" in texts and "'_content'" in texts and all(i["severity"] == "warning" for i in issues)
    self_link = next(link["url"] for link in lenient["link"] if link["relation"] == "self")
    assert "status=requested" in self_link and "for=" not in self_link
    matches = [e["resource"]["resourceType"] for e in lenient["entry"] if e["search"]["mode"] == "match"]
    assert matches == ["Task"]
    strict = await client.get("Task?for=Patient/x", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["for"]
    clean = (await client.get("Task?status=requested")).json()
    assert _outcome(clean) == []


async def test_conditional_reads_answer_304(client: httpx.AsyncClient) -> None:
    created = await client.post("Patient", json={"resourceType": "Patient", "gender": "female"})
    location = "Patient/" + created.json()["id"]
    first = await client.get(location)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert etag == 'W/"1"'
    for headers in ({"If-None-Match": etag}, {"If-None-Match": '"1"'}, {"If-Modified-Since": modified}):
        same = await client.get(location, headers=headers)
        assert same.status_code == 304, headers
        assert same.content == b"" and same.headers["etag"] == etag
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    assert (await client.get(location, headers={"If-Modified-Since": later})).status_code == 304
    earlier = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)
    assert (await client.get(location, headers={"If-Modified-Since": earlier})).status_code == 200
    assert (await client.get(f"{location}/_history/1", headers={"If-None-Match": etag})).status_code == 304
    await client.put(location, json={"resourceType": "Patient", "id": location[8:], "gender": "male"})
    changed = await client.get(location, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["gender"] == "male"
    # If-None-Match wins over If-Modified-Since (RFC 9110)
    both = await client.get(location, headers={"If-None-Match": etag, "If-Modified-Since": later})
    assert both.status_code == 200
    assert (await client.get("Patient/none", headers={"If-None-Match": "*"})).status_code == 404


async def test_responses_are_compressed_when_the_client_accepts_gzip(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "metadata", headers={"Accept-Encoding": "gzip"}) as reply:
        raw = b"".join([chunk async for chunk in reply.aiter_raw()])
        assert reply.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in reply.headers["vary"].lower()
    assert orjson.loads(gzip.decompress(raw))["resourceType"] == "CapabilityStatement"
    plain = await client.get("metadata", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert len(raw) * 5 < len(plain.content)


async def test_metadata_summary_and_terminology_mode(client: httpx.AsyncClient) -> None:
    full = await client.get("metadata")
    summary = await client.get("metadata?_summary=true")
    assert summary.status_code == 200
    body = summary.json()
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"
    assert len(summary.content) * 10 < len(full.content)
    patient = next(r for r in body["rest"][0]["resource"] if r["type"] == "Patient")
    assert "searchParam" not in patient and "interaction" not in patient
    assert {op["name"] for op in patient["operation"]} >= {"everything", "validate"}  # summary elements stay
    assert any(t["code"] == "SUBSETTED" for t in body["meta"]["tag"])
    terminology = (await client.get("metadata?mode=terminology")).json()
    assert terminology["resourceType"] == "TerminologyCapabilities"
    systems = {cs["uri"] for cs in terminology["codeSystem"]}
    assert "https://termtem.org/fhir/CodeSystem/th-dspm-result" in systems
    assert "http://hl7.org/fhir/administrative-gender" in systems
    assert {p["name"] for p in terminology["expansion"]["parameter"]} >= {"filter", "count", "offset"}
    bad = await client.get("metadata?mode=everything")
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["mode"]


async def test_front_page_for_people_and_for_fhir_clients(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path, docs_url="https://docs.example/termtem")) as (_, http):
        page = await http.get(ORIGIN + "/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'href="http://testserver/fhir/metadata"' in page.text
        assert "https://docs.example/termtem" in page.text and "Auth is off" in page.text
        for accept in ("application/fhir+json", "*/*", None):
            headers = {"Accept": accept} if accept else {}
            fhir = await http.get(ORIGIN + "/", headers=headers)
            assert fhir.status_code == 200, accept
            assert fhir.json()["resourceType"] == "CapabilityStatement"
        summary = await http.get(ORIGIN + "/?_summary=true", headers={"Accept": "application/fhir+json"})
        assert "searchParam" not in summary.json()["rest"][0]["resource"][0]


def _raw_get(base: str, target: str) -> tuple[int, bytes]:
    """A GET whose request line carries ``target`` as raw UTF-8 bytes (what curl sends for Thai)."""
    host, port = base.split("//", 1)[1].split("/", 1)[0].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        decoded, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2 :]
        body = decoded
    return int(head.split(b" ", 2)[1]), body


def test_raw_thai_in_the_request_url_is_accepted(live_server: str) -> None:
    patient = {"resourceType": "Patient", "name": [{"given": ["สมศรี"], "family": "ใจดี"}]}
    created = httpx.post(f"{live_server}/Patient", json=patient)
    assert created.status_code == 201
    status, body = _raw_get(live_server, "/fhir/Patient?name=สมศรี")
    assert status == 200, body[:300]
    assert [e["resource"]["id"] for e in orjson.loads(body)["entry"]] == [created.json()["id"]]
    status, body = _raw_get(
        live_server,
        "/fhir/ValueSet/$expand?url=https://termtem.org/fhir/ValueSet/th-dspm-result&filter=ล่าช้า",
    )
    assert status == 200, body[:300]
    assert orjson.loads(body)["expansion"]["contains"]
