"""``termtem identity`` on a store, and the resumable job that links a store written before linking."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from fhir_server.cli import app
from fhir_server.identity import job, records
from fhir_server.interactions import writes
from fhir_server.security.access import stamp_owner
from fhir_server.storage.base import StoredResource
from fhir_server.storage.sqlite.store import SqliteStore
from tests.identity.helpers import CID, child
from tests.security.conftest import World

runner = CliRunner()
KITTI, OTHER = "1103700123458", "1103700123466"


async def _old_store(url: str) -> dict[str, str]:
    """Patients written the way a store older than the identity layer holds them: no golden records."""
    store = SqliteStore(url)
    await store.open()
    made: dict[str, str] = {}
    try:
        people = {
            "cc": ("Organization/cc", child(None)),  # no CID at the childcare centre
            "hc": ("Organization/hc", child(KITTI)),
            "hosp": ("Organization/hosp", child(KITTI, birth="2564-03-15")),
            "other": ("Organization/hc", child(OTHER, given="มาลัย", gender="female")),
        }
        async with store.transaction() as tx:
            for key, (agency, body) in people.items():
                id_ = writes.new_id()
                data = writes.stamp(None, body, "Patient", id_, 1, writes.now_instant())
                data = stamp_owner(data, orjson.loads(data), agency)
                await tx.put(
                    StoredResource("Patient", id_, 1, writes.now_instant(), "POST", data),
                    writes.index_rows(orjson.loads(data)),
                )
                made[key] = id_
    finally:
        await store.close()
    return made


async def _golden_of(url: str, source: str) -> Any:
    store = SqliteStore(url)
    await store.open()
    try:
        return await records.golden_of(store, source)
    finally:
        await store.close()


def test_link_existing_is_resumable_and_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    made = asyncio.run(_old_store(url))
    assert asyncio.run(_golden_of(url, made["hc"])) is None
    monkeypatch.setattr(job, "BATCH", 2)

    def die_after_first_batch(record: dict[str, Any]) -> None:
        raise KeyboardInterrupt  # the process dies: no clean hand-back, its lease simply runs out

    async def crashed() -> None:
        store = SqliteStore(url)
        await store.open()
        try:
            await job.run(store, progress=die_after_first_batch, lease_seconds=0.3)
        except KeyboardInterrupt:
            pass
        finally:
            await store.close()

    asyncio.run(crashed())
    recorded = asyncio.run(_jobs(url))
    assert [(j.kind, j.state, j.checkpoint["processed"]) for j in recorded] == [
        ("identity-link", "running", 2)
    ]
    time.sleep(0.4)  # the dead run's lease expires; any process may claim the job now
    result = runner.invoke(app, ["identity", "link-existing", "--store", url])
    assert result.exit_code == 0, result.output
    assert "4 source records" in result.output  # resumed from the checkpoint, every record counted once
    (finished,) = asyncio.run(_jobs(url))
    assert finished.state == "completed" and finished.attempts == 2 and finished.result["processed"] == 4
    golden = asyncio.run(_golden_of(url, made["hc"]))
    assert set(golden.state.sources()) == {made["hc"], made["hosp"]}
    assert golden.content["birthDate"] == "2021-03-15"
    assert asyncio.run(_golden_of(url, made["other"])).id != golden.id
    # The childcare record (no CID) is queued against the child, not linked.
    report = runner.invoke(app, ["identity", "duplicates", "--store", url, "--format", "json"])
    assert report.exit_code == 0, report.output
    rows = orjson.loads(report.output)
    cc_golden = asyncio.run(_golden_of(url, made["cc"])).id
    assert any({r["golden"], r["candidate"]} == {cc_golden, golden.id} for r in rows), rows
    # Running it again finds the completed job; --restart goes over everything and changes nothing.
    assert (
        "0 golden records made"
        not in runner.invoke(app, ["identity", "link-existing", "--store", url]).output
    )
    again = runner.invoke(app, ["identity", "link-existing", "--store", url, "--restart"])
    assert again.exit_code == 0 and "0 golden records made" in again.output, again.output
    assert len(asyncio.run(_jobs(url))) == 2


async def _jobs(url: str) -> list[Any]:
    from fhir_server import jobs

    store = SqliteStore(url)
    await store.open()
    try:
        return sorted(await jobs.list_jobs(store, kind=job.KIND), key=lambda j: j.created)
    finally:
        await store.close()


async def test_link_existing_over_http_runs_on_the_servers_job_runner(world: World) -> None:
    from fhir_server import jobs

    async with world.store.transaction() as tx:  # Patients stored before linking existed
        for agency, body in (("Organization/hc", child(KITTI)), ("Organization/hosp", child(KITTI))):
            id_ = writes.new_id()
            data = stamp_owner(
                writes.stamp(None, body, "Patient", id_, 1, writes.now_instant()), body, agency
            )
            await tx.put(
                StoredResource("Patient", id_, 1, writes.now_instant(), "POST", data),
                writes.index_rows(orjson.loads(data)),
            )
    clerk = await world.caller("hc-app", "Organization/hc", "health-centre")
    refused = await clerk.post("Patient/$identity-link-existing", {"resourceType": "Parameters"})
    assert refused.status_code == 403
    admin = await world.caller("admin", "Organization/ops", "admin")
    reply = await admin.post("Patient/$identity-link-existing", {"resourceType": "Parameters"})
    assert reply.status_code == 200, reply.text
    out = {
        p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in reply.json()["parameter"]
    }
    assert out["status"] in ("queued", "running", "complete")
    (done,) = await jobs.wait_for(world.store, [out["job"]], timeout=30)
    assert done.state == "completed" and done.kind == "identity-link" and done.owner == "admin"
    assert done.result == {"processed": 2, "linked": 1, "created": 1, "queued": 0}
    found = await admin.get(
        f"Patient?identifier={CID}|{KITTI}&_tag=https://termtem.org/fhir/tag/identity|golden"
    )
    assert len(found.json()["entry"]) == 1


def test_steward_commands_and_refusals_are_audited(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    made = asyncio.run(_old_store(url))
    assert runner.invoke(app, ["identity", "link-existing", "--store", url]).exit_code == 0
    kid = asyncio.run(_golden_of(url, made["hc"])).id
    other = asyncio.run(_golden_of(url, made["other"])).id
    cc = asyncio.run(_golden_of(url, made["cc"])).id
    refused = runner.invoke(app, ["identity", "merge", other, kid, "--store", url])
    assert refused.exit_code == 1 and "different valid CIDs" in refused.output
    merged = runner.invoke(
        app, ["identity", "merge", f"Patient/{cc}", kid, "--store", url, "--by", "khun-somchai"]
    )
    assert merged.exit_code == 0, merged.output
    listed = runner.invoke(app, ["identity", "links", made["cc"], "--store", url])
    assert f"golden Patient/{kid}" in listed.output and "manual merge" in listed.output
    assert "khun-somchai" in listed.output
    assert runner.invoke(app, ["identity", "unmerge", cc, "--store", url]).exit_code == 0
    assert asyncio.run(_golden_of(url, made["cc"])).id == cc

    async def events() -> list[dict[str, Any]]:
        store = SqliteStore(url)
        await store.open()
        try:
            return [orjson.loads(s.body) async for s in store.iterate("AuditEvent")]
        finally:
            await store.close()

    described = [e["outcomeDesc"] for e in asyncio.run(events())]
    assert any("merge refused" in d and "different valid CIDs" in d for d in described)
    assert any(f"Patient/{cc} merged into Patient/{kid} by khun-somchai" in d for d in described)
    assert any("undone by termtem-cli" in d for d in described)
