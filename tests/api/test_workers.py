"""`termtem serve --workers 2`: two processes on one port and one store behave as one server.

Fresh connections land on either worker, so each step below is checked over many new connections:
a change made through one process (a consent withdrawn, a search parameter added and reindexed)
must count in the other from the next request.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fhir_server import canonical
from fhir_server.cli.clients import client_assertion
from fhir_server.security import keys, roles
from fhir_server.security.clients import ClientRecord, ClientRegistry
from fhir_server.security.tokens import ASSERTION_TYPE
from fhir_server.storage.sqlite.store import SqliteStore
from tests.live import serve
from tests.security import scene

CLIENTS = {
    "hospital": ("Organization/hosp", "hospital"),
    "school": ("Organization/school1", "school"),
    "admin": ("Organization/ops", "admin"),
}


async def _register(store_url: str, folder: Path) -> None:
    store = SqliteStore(store_url)
    await store.open()
    try:
        for name, (org, role) in CLIENTS.items():
            private = keys.generate_private_jwk("EC", "ES384")
            keys.save_private_jwk(folder / f"{name}.jwk.json", private)
            await ClientRegistry(store).add(
                ClientRecord(
                    id=name,
                    name=name,
                    organization=org,
                    role=role,
                    scopes=roles.get_role(role).default_scopes,
                    jwks={"keys": [keys.public_jwk(private)]},
                )
            )
    finally:
        await store.close()


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    store_url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    asyncio.run(_register(store_url, tmp_path))
    env = {"TERMTEM_DATA_DIR": str(tmp_path / "data")}
    with serve(store_url, auth=True, env=env, args=("--workers", "2"), timeout=300) as live:
        yield live.origin, live.process


def _token(origin: str, name: str, folder: Path) -> dict[str, str]:
    reply = httpx.post(
        f"{origin}/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(name, folder / f"{name}.jwk.json", f"{origin}/auth/token"),
            "scope": roles.get_role(CLIENTS[name][1]).default_scopes,
        },
    )
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def _fresh(method: str, url: str, headers: dict[str, str], **kwargs: object) -> httpx.Response:
    """One request on a new connection (so it may land on either worker)."""
    with httpx.Client(timeout=30) as http:
        return http.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]


def test_two_workers_serve_one_store(
    two_workers: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    origin, process = two_workers
    base = f"{origin}/fhir"
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    assert len(children) == 2  # the supervisor and its two workers
    hospital, school, admin = (_token(origin, name, tmp_path) for name in ("hospital", "school", "admin"))
    json = {"Content-Type": "application/fhir+json"}

    # Tokens issued by one worker verify in the other (one signing key); writes from both commit.
    patient = _fresh("POST", f"{base}/Patient", {**hospital, **json}, json={"resourceType": "Patient"})
    assert patient.status_code == 201, patient.text
    child = patient.json()["id"]
    growth = _fresh(
        "POST", f"{base}/Observation", {**hospital, **json}, json=scene.observation(child, scene.GROWTH, "w")
    )
    assert growth.status_code == 201, growth.text
    observation = f"{base}/Observation/{growth.json()['id']}"
    consent = _fresh(
        "POST",
        f"{base}/Consent",
        {**hospital, **json},
        json=scene.consent(child, actors=("Organization/school1",)),
    )
    assert consent.status_code == 201, consent.text
    assert [_fresh("GET", observation, school).status_code for _ in range(12)] == [200] * 12

    # Withdrawn through one worker: refused by both from the next request on.
    withdrawn = {**consent.json(), "status": "inactive"}
    reply = _fresh("PUT", f"{base}/Consent/{withdrawn['id']}", {**hospital, **json}, json=withdrawn)
    assert reply.status_code == 200, reply.text
    assert [_fresh("GET", observation, school).status_code for _ in range(12)] == [404] * 12

    # A search parameter added and reindexed through one worker indexes and searches in both.
    parameter = {
        "resourceType": "SearchParameter",
        "url": f"{canonical.BASE}/SearchParameter/test-workers-nickname",
        "name": "nickname",
        "status": "active",
        "description": "A nickname kept in Patient.name.text",
        "code": "nickname",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.text",
    }
    reply = _fresh("POST", f"{base}/SearchParameter", {**admin, **json}, json=parameter)
    assert reply.status_code == 201, reply.text
    reindex = _fresh("POST", f"{base}/$reindex", {**admin, **json}, json={"resourceType": "Parameters"})
    assert reindex.status_code in (200, 202), reindex.text
    for n in range(6):  # written through either worker, each indexed with the new parameter
        named = {"resourceType": "Patient", "name": [{"text": f"Nok{n}"}]}
        assert _fresh("POST", f"{base}/Patient", {**hospital, **json}, json=named).status_code == 201
    deadline = time.monotonic() + 30
    while True:
        replies = [_fresh("GET", f"{base}/Patient?nickname=Nok", hospital) for _ in range(8)]
        if all(r.status_code == 200 for r in replies) or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # the reindex job is still running
    assert [r.status_code for r in replies] == [200] * 8, replies[0].text
    assert {r.json()["total"] for r in replies} == {6}
