"""A small generated population shared by the synthetic-data tests (generation is deterministic)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.synthetic import generate

SEED = 2024


@pytest.fixture(scope="session")
def population() -> list[list[dict[str, Any]]]:
    """Agencies, then 300 children's households, with Type/id references."""
    return list(generate(SEED, 300))


@pytest.fixture(scope="session")
def resources(population: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [r for batch in population for r in batch]
