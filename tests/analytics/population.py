"""A generated population written straight into a store (no HTTP, no validation: test data only)."""

from __future__ import annotations

from typing import Any

from fhir_server.interactions import writes
from fhir_server.synthetic.population import generate


async def load_population(store: Any, seed: int, children: int) -> list[dict[str, Any]]:
    """Write the generated agencies and households; returns every resource written."""
    written: list[dict[str, Any]] = []
    for batch in generate(seed, children=children):
        async with store.transaction() as tx:
            for resource in batch:
                await writes.write_version(
                    tx,
                    resource["resourceType"],
                    resource["id"],
                    dict(resource),
                    None,
                    current=None,
                    method="PUT",
                )
        written.extend(batch)
    return written
