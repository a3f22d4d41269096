"""A new child costs the identity layer two trips to the store: its record with its guardians, then one
combined look-up (the golden records sharing its identifiers and the children it could be).

Each trip is a hop to the store's writer thread; a distinct Patient create used to take five (its
record, its guardians, its identifiers, then the candidates' identifiers and blocking keys, each alone).
The decisions are the same (the rest of ``tests/identity`` pins them).
"""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.identity import hooks
from fhir_server.identity.records import golden_of
from fhir_server.storage.sqlite.store import _SqliteTransaction
from tests.identity.helpers import CID, child
from tests.security.conftest import World

_TRIPS = ("read", "search", "look_up", "kv_get")


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The store trips the identity layer makes while it links (``hooks.settle``)."""
    made: list[str] = []
    linking = [False]
    for name in _TRIPS:
        original = getattr(_SqliteTransaction, name)

        async def counted(self: Any, *args: Any, _original: Any = original, _name: str = name) -> Any:
            if linking[0]:
                made.append(_name)
            return await _original(self, *args)

        monkeypatch.setattr(_SqliteTransaction, name, counted)
    settle = hooks.settle

    async def flagged(tx: Any, pending: Any) -> Any:
        linking[0] = True
        try:
            return await settle(tx, pending)
        finally:
            linking[0] = False

    monkeypatch.setattr(hooks, "settle", flagged)
    return made


async def test_a_new_child_takes_two_trips_to_the_store(world: World, trips: list[str]) -> None:
    await world.set_agency("Organization/hosp", "hospital")
    hospital = await world.caller("hospital", "Organization/hosp", "hospital")
    for cid, given in (("1103700123458", "กิตติ"), ("1103700123466", "มะลิ")):
        await hospital.create(child(cid, given=given))  # children already known
    cases = [
        child("3101200456780", given="สมชาย"),  # a valid CID nobody holds
        child(None, given="ปิยะ", birth="2019-01-02"),  # no identifier
        child("1103700123450", given="นก"),  # a CID with a typing slip (near CIDs looked up)
    ]
    for body in cases:
        trips.clear()
        created = await hospital.create(body)
        assert trips == ["look_up", "look_up"], (created["id"], trips)
    golden = await hospital.get(f"Patient?identifier={CID}|3101200456780")
    assert golden.status_code == 200


async def test_a_child_known_at_another_agency_links_as_before(world: World, trips: list[str]) -> None:
    """The combined look-up finds the other agency's child; the link is made (more trips: the golden
    record's review items and its other source are read to rebuild it)."""
    for org in ("hosp", "hc"):
        await world.set_agency(f"Organization/{org}", "hospital")
    first = await world.caller("first", "Organization/hosp", "hospital")
    second = await world.caller("second", "Organization/hc", "hospital")
    mine = await first.create(child("1103700123458"))
    trips.clear()
    theirs = await second.create(child("1103700123458"))
    assert trips[:2] == ["look_up", "look_up"] and "search" not in trips[:2]
    async with world.store.transaction() as tx:
        golden = await golden_of(tx, mine["id"])
        assert golden is not None and golden.state.link_of(theirs["id"]) is not None
