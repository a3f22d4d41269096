"""Disclosure control for roles that see aggregates only: small cells withheld, and every published figure
perturbed by its cell key so that differences between figures never reveal a small cell.

Withholding cells under five children is not enough on its own: Bangkok's total minus the 49 districts
shown gives the fiftieth, a year minus three of its quarters gives the fourth, a district minus its
health centres gives the rest. So each published count carries a small, bounded noise (-2..+2) chosen by
its *cell key*: every child has a secret record key (a keyed hash of the child's id, the secret held by
the server in the store's key/value area), a cell's key is the sum of its children's record keys, and
the noise is a function of the cell key. The same children always give the same noise (asking again,
or the same cell through another page, report or CSV, shows the same figure, so repeating a question
cannot average the noise away), while any other set of children gets independent noise, so a
difference of two figures is the difference of their cells plus up to four of noise: not the small
cell. Rates are computed from the perturbed counts; averages (days) move by up to 10%. A cell under
five children is never shown, whatever its noise; a shown count is never under five.

The same approach (the "cell key method") is what national statistics offices use for tables built on
demand. Aggregate-only roles may also ask only for whole calendar quarters or years
(``published_period``), so differences between overlapping periods of their choosing are not available
either.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from fhir_server.analytics.measures.evaluate import Cell, GroupResult, MeasureResult, Stratum, score_of

SMALL_CELL = 5
SPREAD = 2  # counts move by at most this much
MEAN_SPREAD = 0.10  # averages move by at most this fraction
KEY_MODULUS = 2**32
SECRET_NAMESPACE = "analytics"
SECRET_KEY = "cell-key-secret"


async def cell_key_secret(store: Any) -> str:
    """The server's secret for record keys, created once and kept in the store (every server of a site
    uses the same one, and it survives restarts: a new secret would give new noise to average)."""
    held = await store.kv_get(SECRET_NAMESPACE, SECRET_KEY)
    if held is None:
        await store.kv_put(SECRET_NAMESPACE, SECRET_KEY, {"secret": secrets.token_hex(32)})
        held = await store.kv_get(SECRET_NAMESPACE, SECRET_KEY)
    return str((held or {})["secret"])


def _draw(key: int | None, purpose: str, steps: int) -> int:
    """A number in 0..steps-1 fixed by the cell key (uniform over keys)."""
    digest = hashlib.blake2b(f"{key}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % steps


def published_count(cell: Cell) -> int:
    """The count an aggregate-only role sees for a cell of at least five children."""
    if cell.key is None or cell.children < SMALL_CELL:
        return cell.count
    noise = _draw(cell.key, "count", 2 * SPREAD + 1) - SPREAD
    return max(SMALL_CELL, cell.count + noise)


def _published_mean(value: float | None, key: int | None) -> float | None:
    if value is None or key is None:
        return value
    steps = 21
    factor = 1 + MEAN_SPREAD * ((_draw(key, "mean", steps) - steps // 2) / (steps // 2))
    return value * factor


def _cells(populations: dict[str, Cell]) -> dict[str, Cell]:
    return {code: Cell(published_count(cell), cell.children) for code, cell in populations.items()}


def _score(scoring: str, published: dict[str, Cell], original: dict[str, Cell], score: float | None) -> Any:
    if scoring == "continuous-variable":
        cell = original.get("measure-population") or original.get("initial-population")
        return _published_mean(score, cell.key if cell else None)
    return score_of(scoring, published, None)


def _group(group: GroupResult) -> GroupResult:
    scoring = group.plan.scoring
    published = _cells(group.populations)
    strata = {
        name: [
            Stratum(
                s.value,
                _cells(s.populations),
                _score(scoring, _cells(s.populations), s.populations, s.score),
            )
            for s in items
        ]
        for name, items in group.strata.items()
    }
    return replace(
        group,
        populations=published,
        score=_score(scoring, published, group.populations, group.score),
        strata=strata,
    )


def perturbed(result: MeasureResult) -> MeasureResult:
    """What an aggregate-only role may be shown of ``result`` (evaluated with a cell-key secret); small
    cells are still marked by their true number of children and withheld by the report and pages."""
    return replace(result, groups=[_group(g) for g in result.groups])


def published_period(start: date, end: date) -> bool:
    """A whole calendar quarter or a whole calendar year."""
    if start.day != 1 or start.month not in (1, 4, 7, 10):
        return False
    quarter_end = date(start.year + (start.month == 10), (start.month + 2) % 12 + 1, 1) - timedelta(days=1)
    return end == quarter_end or (start.month == 1 and end == date(start.year, 12, 31))
