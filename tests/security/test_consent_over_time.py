"""A consent's life: granted, used, expired, renewed, withdrawn; each step takes effect at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.security import scene
from tests.security.conftest import World


def _day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


async def test_consent_lifecycle(world: World) -> None:
    s = await scene.build(world)
    childcare = await world.caller("cc-app", "Organization/cc", "childcare")
    growth = f"Observation/{s.ids['child2-growth']}"
    assert (await childcare.get(growth)).status_code == 404  # before any consent
    await s.hospital.create(
        scene.consent("child2", agency_types=("childcare-centre",), period=(_day(3), _day(30)))
    )
    assert (await childcare.get(growth)).status_code == 404  # granted, not yet in force
    expired = await s.hospital.create(
        scene.consent("child2", agency_types=("childcare-centre",), period=(_day(-30), _day(-1)))
    )
    assert (await childcare.get(growth)).status_code == 404  # ended yesterday
    current = await s.hospital.create(
        scene.consent("child2", agency_types=("childcare-centre",), period=(_day(-1), _day(30)))
    )
    assert (await childcare.get(growth)).status_code == 200  # in force: used
    assert (await childcare.get("Observation?_summary=count")).json()["total"] == 2
    current["status"] = "inactive"
    assert (await s.hospital.put(f"Consent/{current['id']}", current)).status_code == 200
    assert (await childcare.get(growth)).status_code == 404  # withdrawn
    assert (await s.hospital.delete(f"Consent/{expired['id']}")).status_code in (200, 204)
    assert (await childcare.get("Observation?_summary=count")).json()["total"] == 0
    reads = [
        e
        for e in await world.audit_events()
        if e["type"]["code"] == "rest"
        and e["subtype"][0]["code"] == "read"
        and e["agent"][0]["who"].get("identifier", {}).get("value") == "cc-app"
    ]
    assert [e["outcome"] for e in reads] == ["4", "4", "4", "0", "4"]


async def test_view_cache_honours_period_boundaries(world: World) -> None:
    """A cached view is only reused before the next start or end of any consent period."""
    import time

    from fhir_server.search.values import date_range
    from fhir_server.security.consent import AccessRequest

    s = await scene.build(world)
    await s.hospital.create(
        scene.consent("child2", agency_types=("childcare-centre",), period=(_day(-1), _day(1)))
    )
    book = world.app.state.security.consents
    now = int(time.time() * 1000)
    request = AccessRequest("Organization/cc", "childcare-centre", "COC", now)
    assert "child2" in (await book.patients_by_class(world.store, request))["growth"]
    later = date_range(_day(2))[0]  # type: ignore[index]
    after_end = AccessRequest("Organization/cc", "childcare-centre", "COC", later)
    assert "child2" not in (await book.patients_by_class(world.store, after_end))["growth"]


async def test_many_changes_at_once_reload_the_book(world: World, monkeypatch: object) -> None:
    from fhir_server.security.consent import ConsentBook

    s = await scene.build(world)
    childcare = await world.caller("cc-app", "Organization/cc", "childcare")
    growth = f"Observation/{s.ids['child2-growth']}"
    assert (await childcare.get(growth)).status_code == 404
    monkeypatch.setattr(ConsentBook, "_CHANGES_PAGE", 1)  # type: ignore[attr-defined]
    reloads = []
    original = ConsentBook._reload

    async def counting(self: ConsentBook, store: object) -> None:
        reloads.append(1)
        await original(self, store)  # type: ignore[arg-type]

    monkeypatch.setattr(ConsentBook, "_reload", counting)  # type: ignore[attr-defined]
    await s.hospital.create(scene.consent("child1", agency_types=("childcare-centre",)))
    await s.hospital.create(scene.consent("child2", agency_types=("childcare-centre",)))
    assert (await childcare.get(growth)).status_code == 200
    assert (await childcare.get("Observation?_summary=count")).json()["total"] == 4
    assert reloads  # the page of changes overflowed, so the book was read again in full
