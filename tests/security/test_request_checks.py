"""A secured request's store checks (its client's registry entry, whether identity links or Consents
changed) are one statement, and answer exactly what the separate look-ups answer.

The guarantees stay as they were: a removed client, a new link or a withdrawn Consent counts from the
next request (``test_consent_under_load.py``, ``tests/api/test_workers.py``).
"""

from __future__ import annotations

from typing import Any

from fhir_server.observability.timed_store import backend_of
from fhir_server.security.clients import NAMESPACE
from fhir_server.storage import newest as newest_module
from tests.security import scene
from tests.security.conftest import World


async def test_a_consented_read_checks_the_store_in_one_statement(world: World) -> None:
    s = await scene.build(world)
    target = f"Observation/{s.ids['child1-growth']}"
    assert (await s.school.get(target)).status_code == 200  # warm: consent view and books built
    statements: list[str] = []
    inline = backend_of(world.store)._inline
    inline.set_trace_callback(statements.append)
    try:
        assert (await s.school.get(target)).status_code == 200
    finally:
        inline.set_trace_callback(None)
    checks = [q for q in statements if "FROM kv" in q or "FROM history" in q]
    assert len(checks) == 1, statements
    assert "FROM kv" in checks[0] and checks[0].count("FROM history") == 2


class _OneByOne:
    """The store without ``probe``: what other backends do."""

    def __init__(self, store: Any) -> None:
        self._store = store

    async def kv_get(self, namespace: str, key: str) -> Any:
        return await self._store.kv_get(namespace, key)

    async def history(self, query: Any) -> Any:
        return await self._store.history(query)


async def test_the_combined_look_up_answers_as_the_separate_ones(world: World) -> None:
    types = ("Patient", "Consent", "Task")
    empty = await newest_module.probe(world.store, NAMESPACE, "nobody", types)
    assert empty == (None, {"Patient": None, "Consent": None, "Task": None})
    s = await scene.build(world)
    withdrawn = {**(await s.hospital.get(f"Consent/{s.ids['consent']}")).json(), "status": "inactive"}
    assert (await s.hospital.put(f"Consent/{withdrawn['id']}", withdrawn)).status_code == 200
    together = await newest_module.probe(world.store, NAMESPACE, "school", types)
    apart = await newest_module.probe(_OneByOne(world.store), NAMESPACE, "school", types)
    assert together == apart
    entry, newest = together
    assert entry is not None and entry["id"] == "school"
    assert newest["Consent"] is not None and newest["Consent"][:2] == (withdrawn["id"], 2)
    assert newest["Patient"] is not None and newest["Task"] is None
