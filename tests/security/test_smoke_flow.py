from __future__ import annotations

from tests.security import scene
from tests.security.conftest import World


async def test_smoke(world: World) -> None:
    s = await scene.build(world)
    r = await s.school.get("Observation")
    print(r.status_code, r.json().get("total"), [e["resource"]["code"]["text"] + e["resource"]["subject"]["reference"] for e in r.json().get("entry", [])])
    r = await s.school.get(f"Observation/{s.ids['child2-growth']}")
    print(r.status_code, r.text[:200])
    assert False
