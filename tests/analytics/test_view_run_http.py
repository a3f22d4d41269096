"""$viewdefinition-run and $run over HTTP with auth on: formats, the caller's restriction, bad input."""

from __future__ import annotations

import csv
import io

import orjson
import pyarrow.parquet as pq

from tests.security import scene
from tests.security.conftest import World

GROWTH_VIEW = {
    "resourceType": "ViewDefinition",
    "status": "active",
    "resource": "Observation",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()", "type": "id"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)", "type": "id"},
            ]
        }
    ],
}


def parameters(*params: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(params)}


async def test_formats_and_levels(world: World) -> None:
    s = await scene.build(world)
    admin = s.admin
    reply = await admin.get("ViewDefinition/children/$run?_format=csv")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert sorted(r["patient_id"] for r in rows) == ["child1", "child2"]
    assert rows[0]["sex"] == "female" and rows[0]["birth_date"] == "2020-01-01"

    reply = await admin.get("$viewdefinition-run?viewReference=ViewDefinition/children&_format=ndjson")
    assert reply.status_code == 200, reply.text
    lines = [orjson.loads(line) for line in reply.content.splitlines()]
    assert sorted(line["patient_id"] for line in lines) == ["child1", "child2"]

    reply = await admin.post(
        "$viewdefinition-run",
        parameters(
            {"name": "_format", "valueCode": "parquet"}, {"name": "viewResource", "resource": GROWTH_VIEW}
        ),
    )
    assert reply.status_code == 200, reply.text
    table = pq.read_table(io.BytesIO(reply.content))
    assert table.column_names == ["id", "patient"]
    assert sorted(table.column("patient").to_pylist()) == ["child1"] * 3 + ["child2"] * 3

    reply = await admin.get("ViewDefinition/children/$viewdefinition-run?_format=json&_limit=1")
    assert reply.status_code == 200 and len(reply.json()) == 1
    reply = await admin.get("ViewDefinition/children/$run?_format=csv&header=false")
    assert not reply.text.startswith('"patient_id"') and len(reply.text.splitlines()) == 2


async def test_rows_are_what_the_caller_may_see(world: World) -> None:
    s = await scene.build(world)
    # school1 holds a consent for child1 (demographics, growth, development) and nothing for child2
    body = parameters(
        {"name": "_format", "valueCode": "ndjson"}, {"name": "viewResource", "resource": GROWTH_VIEW}
    )
    reply = await s.school.post("ViewDefinition/$run", body)
    assert reply.status_code == 200, reply.text
    seen = [orjson.loads(line) for line in reply.content.splitlines()]
    assert sorted(r["id"] for r in seen) == sorted([s.ids["child1-growth"], s.ids["child1-dev"]])
    reply = await s.other_school.post("ViewDefinition/$run", body)
    assert reply.status_code == 200 and reply.content == b""
    reply = await s.hospital.post("ViewDefinition/$run", body)
    assert len(reply.content.splitlines()) == 6


async def test_stored_views_admin_writes_everyone_reads(world: World) -> None:
    s = await scene.build(world)
    reply = await s.school.post("ViewDefinition", GROWTH_VIEW)
    assert reply.status_code == 403
    reply = await s.admin.post(
        "ViewDefinition", {**GROWTH_VIEW, "name": "obs_by_patient", "url": "https://example.org/v/obs"}
    )
    assert reply.status_code == 201, reply.text
    new_id = reply.json()["id"]
    found = (await s.school.get("ViewDefinition?name=obs_by")).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [new_id]
    reply = await s.school.get(f"ViewDefinition/{new_id}/$run?_format=csv")
    assert reply.status_code == 200 and len(reply.text.splitlines()) == 3  # header + child1's two
    reply = await s.admin.get("$viewdefinition-run?viewReference=https://example.org/v/obs&_format=csv")
    assert len(reply.text.splitlines()) == 7
    shipped = (await s.school.get("ViewDefinition?resource=Patient")).json()
    assert "children" in [e["resource"]["id"] for e in shipped["entry"]]


async def test_bad_input(world: World) -> None:
    s = await scene.build(world)
    bad_type = {**GROWTH_VIEW, "select": [{"column": [{"name": "id", "path": "id", "type": "varchar"}]}]}
    reply = await s.admin.post("ViewDefinition", bad_type)
    assert reply.status_code == 422
    assert reply.json()["issue"][0]["expression"] == ["ViewDefinition.select[0].column[0].type"]
    bad_path = {
        **GROWTH_VIEW,
        "select": [{"column": [{"name": "id", "path": "subject.where(reference = )"}]}],
    }
    reply = await s.admin.post(
        "ViewDefinition/$run", parameters({"name": "viewResource", "resource": bad_path})
    )
    assert reply.status_code == 422
    assert reply.json()["issue"][0]["expression"] == ["ViewDefinition.select[0].column[0].path"]
    reply = await s.admin.get("ViewDefinition/children/$run?_format=xlsx")
    assert reply.status_code == 400 and reply.json()["issue"][0]["expression"] == ["_format"]
    reply = await s.admin.get("ViewDefinition/nope/$run")
    assert reply.status_code == 404
    reply = await s.admin.get("ViewDefinition/children/$run?_since=yesterday")
    assert reply.status_code == 400
    reply = await s.admin.post("ViewDefinition/$run", parameters({"name": "_format", "valueCode": "csv"}))
    assert reply.status_code == 400
    # a view naming a type the caller may not search is refused, not silently emptied
    researcher = await world.caller("researcher", "Organization/research", "researcher")
    reply = await researcher.get("ViewDefinition/children/$run")
    assert reply.status_code == 403
