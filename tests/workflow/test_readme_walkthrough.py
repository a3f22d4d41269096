"""The README's walkthrough works as written: its example files (``docs/examples``) and the requests its
commands make, sent by the agencies it names, over HTTP with auth on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fhir_server import canonical
from tests.security.conftest import Caller, World, agency

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
README = (ROOT / "README.md").read_text(encoding="utf-8")
PATCH = {"Content-Type": "application/json-patch+json"}


def _example(name: str) -> Any:
    assert f"docs/examples/{name}" in README, f"the README no longer uses {name}"
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def _readme_urls(prefix: str) -> list[str]:
    """The relative URLs of the README's curl commands that start with ``$B/<prefix>``."""
    return [u for u in re.findall(r'"\$B/([^"]+)"', README) if u.startswith(prefix)]


async def _register(world: World, oid: str, kind: str, role: str, *identifiers: str) -> Caller:
    """An agency as ``termtem agency set`` and ``termtem client add`` register it."""
    await world.set_agency(f"Organization/{oid}", kind, *identifiers)
    admin = await world.caller(f"admin-{oid}", "Organization/ops", "admin")
    assert (await admin.put(f"Organization/{oid}", agency(oid, kind))).status_code in (200, 201)
    return await world.caller(f"{oid}-app", f"Organization/{oid}", role)


def _created(reply: Any) -> dict[str, str]:
    """resource type -> id of what a transaction created."""
    assert reply.status_code == 200, reply.text
    out = {}
    for entry in reply.json()["entry"]:
        kind, rid = entry["response"]["location"].split("/")[:2]
        out[kind] = rid
    return out


async def test_the_readme_referral(world: World) -> None:
    hc = await _register(world, "hc-7", "health-centre", "health-centre")
    hospital = await _register(world, "hosp-1", "hospital", "hospital")
    made = _created(await hc.post("", _example("referral.json")))
    task_id, request_id = made["Task"], made["ServiceRequest"]
    # The hospital's inbox, as the README asks for it.
    (inbox_url,) = [u for u in _readme_urls("Task?owner=Organization/hosp-1")]
    inbox = (await hospital.get(inbox_url)).json()
    (found,) = [e["resource"] for e in inbox["entry"]]
    assert found["id"] == task_id and found["basedOn"] == [{"reference": f"ServiceRequest/{request_id}"}]
    assert found["restriction"]["period"]["end"]  # the due date the service levels gave it
    # Its moves: the README's loop of JSON Patches, then the completion patch file.
    loop = re.search(r"for s in ([a-z -]+); do", README)
    assert loop is not None
    template = re.search(r"""-d '(\[\{"op": "replace", "path": "/status", "value": ")'\$s'("}\])'""", README)
    assert template is not None
    for status in loop.group(1).split():
        body = json.loads(template.group(1) + status + template.group(2))
        reply = await world.http.patch(
            f"Task/{task_id}", content=json.dumps(body), headers=hospital.headers(PATCH)
        )
        assert reply.status_code == 200, reply.text
    done = await world.http.patch(
        f"Task/{task_id}",
        content=json.dumps(_example("referral-completed.json-patch")),
        headers=hospital.headers(PATCH),
    )
    assert done.status_code == 200, done.text
    # What the README says the health centre then sees.
    closed = (await hc.get(f"ServiceRequest/{request_id}")).json()
    assert closed["status"] == "completed"
    history = (await hc.get(f"Task/{task_id}/_history")).json()
    assert [e["resource"]["status"] for e in reversed(history["entry"])] == [
        "requested",
        "received",
        "accepted",
        "in-progress",
        "completed",
    ]
    (late_url,) = _readme_urls("Task?requester=Organization/hc-7&overdue=true")
    assert (await hc.get(late_url)).status_code == 200


async def test_the_readme_request_for_help(world: World) -> None:
    office = f"{canonical.MSDHS_AGENCY_SYSTEM}|BKK-SHS-1033"
    assert "msdhs-agency\\|BKK-SHS-1033" in README and canonical.MSDHS_AGENCY_SYSTEM in README
    volunteer = await _register(world, "vol", "volunteer", "social-worker")
    centre = await _register(world, "shs-1033", "social-welfare", "social-worker", office)
    made = _created(await volunteer.post("", _example("help-request.json")))
    assert {"Patient", "RelatedPerson", "QuestionnaireResponse"} <= set(made)
    (inbox_url,) = _readme_urls("Task?owner=Organization/shs-1033")
    tasks = [e["resource"] for e in (await centre.get(inbox_url)).json()["entry"]]
    assert len(tasks) == 1 and tasks[0]["for"]["reference"] == f"Patient/{made['Patient']}"
    (cases_url,) = _readme_urls("EpisodeOfCare?")
    cases = [e["resource"] for e in (await centre.get(cases_url)).json()["entry"]]
    assert len(cases) == 1 and cases[0]["patient"]["reference"] == f"Patient/{made['Patient']}"
