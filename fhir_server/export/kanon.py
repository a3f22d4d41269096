"""k-anonymity on the quasi-identifiers of a de-identified export: birth year-month, sex and district.

Every combination of those values in the export must hold at least k children. The method is local
recoding from fine to coarse, then suppression (``docs/deidentification.md``):

1. children whose (birth year-month, sex, district) is shared by at least k children keep it;
2. the others are grouped by (birth year, sex, district); groups of at least k keep that;
3. the rest by (birth year, sex, province); then 4. by (birth year, province) with sex withheld;
5. children still in groups smaller than k are suppressed: none of their data is exported.

Each step only groups the children left over from the step before, so every value combination that
appears in the export (whatever its precision) is shared by at least k children. Deterministic: the
same children give the same result.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from fhir_server.export.deid import SUPPRESSED

QuasiIdentifiers = tuple[str, str, str, str]  # birth year-month, sex, district, province


# The same cells as ``_key``, over the columns (month, sex, district, province) of a table of children:
# ``ChildIndex.generalise`` runs the method in SQL so that no child needs to be held in memory.
SQL_CELLS = (
    "month, sex, district",
    "substr(month, 1, 4), sex, district",
    "substr(month, 1, 4), sex, province",
    "substr(month, 1, 4), province",
)


def _key(qi: QuasiIdentifiers, level: int) -> tuple[str, ...]:
    month, sex, district, province = qi
    year = month[:4]
    if level == 0:
        return (month, sex, district)
    if level == 1:
        return (year, sex, district)
    if level == 2:
        return (year, sex, province)
    return (year, province)


def generalise(children: Iterable[tuple[str, QuasiIdentifiers]], k: int) -> dict[str, int]:
    """For each child, the level it is exported at (0 = full precision ... 3) or ``SUPPRESSED``."""
    left = dict(children)
    levels: dict[str, int] = {}
    for level in range(SUPPRESSED):
        counts = Counter(_key(qi, level) for qi in left.values())
        kept = [child for child, qi in left.items() if counts[_key(qi, level)] >= k]
        for child in kept:
            levels[child] = level
            del left[child]
        if not left:
            break
    for child in left:
        levels[child] = SUPPRESSED
    return levels
