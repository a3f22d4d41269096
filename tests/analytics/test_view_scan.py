"""A whole-type view run with worker processes (``views/scan.py``) gives the table one process makes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from fhir_server.analytics.views import output, scan
from fhir_server.analytics.views.definition import ViewError, compile_view
from fhir_server.analytics.views.library import shipped_view
from fhir_server.analytics.views.run import rows_of
from fhir_server.synthetic.population import generate


@pytest.fixture(scope="module")
def population() -> list[dict[str, Any]]:
    return [r for batch in generate(7, children=60) for r in batch]


async def _batches(resources: list[dict[str, Any]], rtype: str, size: int = 37) -> AsyncIterator[list[bytes]]:
    bodies = [orjson.dumps(r) for r in resources if r["resourceType"] == rtype]
    for start in range(0, len(bodies), size):
        yield bodies[start : start + size]


@pytest.fixture
def workers_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers from the second batch on (a real run waits for 20,000 resources)."""
    monkeypatch.setattr(scan, "_BODIES_BEFORE_WORKERS", 40)


async def test_workers_give_the_rows_one_process_makes(
    population: list[dict[str, Any]], workers_at_once: None
) -> None:
    for name in ("growth", "children"):
        view = shipped_view(name)
        expected = output.to_table(view, rows_of(view, population))
        assert expected.num_rows > 50
        table = await scan.scan_table(view, _batches(population, view.resource_type), processes=2)
        assert table.equals(expected)
        assert table.column_names == view.columns
        assert output.write(table, "parquet") == output.write(expected, "parquet")
        assert output.write(table, "csv") == output.write(expected, "csv")


async def test_untyped_columns_are_inferred_from_every_batch(
    population: list[dict[str, Any]], workers_at_once: None
) -> None:
    """A column without a type takes the narrowest type of all its values: the workers send rows."""
    view = compile_view(
        {
            "resourceType": "ViewDefinition",
            "status": "active",
            "resource": "Observation",
            "select": [
                {
                    "column": [
                        {"name": "id", "path": "id"},
                        {"name": "value", "path": "value.ofType(Quantity).value"},
                        {"name": "codes", "path": "code.coding.code", "collection": True},
                    ]
                }
            ],
        }
    )
    expected = output.to_table(view, rows_of(view, population))
    table = await scan.scan_table(view, _batches(population, "Observation"), processes=1)
    assert table.equals(expected)
    assert table.num_rows == sum(1 for r in population if r["resourceType"] == "Observation")


async def test_a_row_a_worker_cannot_make_is_the_view_error(workers_at_once: None) -> None:
    def observation(i: int, codes: int) -> dict[str, Any]:
        coding = [{"system": "http://loinc.org", "code": f"{i}-{n}"} for n in range(codes)]
        return {"resourceType": "Observation", "id": f"o{i}", "status": "final", "code": {"coding": coding}}

    resources = [observation(i, 1) for i in range(100)] + [observation(100, 2)]
    view = compile_view(
        {
            "resourceType": "ViewDefinition",
            "status": "active",
            "resource": "Observation",
            "select": [{"column": [{"name": "code", "path": "code.coding.code", "type": "code"}]}],
        }
    )
    with pytest.raises(ViewError) as caught:
        await scan.scan_table(view, _batches(resources, "Observation", size=30), processes=1)
    assert caught.value.where == "ViewDefinition.select[0].column[0].path"
    assert "Observation/o100" in caught.value.message and "set collection to true" in caught.value.message
