"""What the mapping engine hands out: mapped records (bundle entries) and row errors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RowError:
    """One reason a record was rejected: the error report has one line per RowError.

    ``row`` is the 1-based line (header is line 1) or JSON array position; 0 means the whole file.
    ``field`` names the input column (as written in the file) or, for profile findings, the FHIRPath.
    """

    file: str
    row: int
    field: str
    reason: str
    table: str = ""
    severity: str = "error"  # "warning": the record was written, the value kept, but it looks wrong

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.severity == "error":
            del out["severity"]  # the report's plain rows are errors
        return out


@dataclass
class MappedRecord:
    """The FHIR transaction entries made from one legacy record, all or nothing.

    Entries are ``{"fullUrl", "resource", "request"}`` dicts whose requests are conditional on business
    identifiers, so importing the same record twice changes nothing.
    """

    file: str
    row: int
    table: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    # Implausible values kept as they are (severity "warning"): reported, not rejected.
    warnings: list[RowError] = field(default_factory=list)

    @property
    def resources(self) -> list[dict[str, Any]]:
        return [e["resource"] for e in self.entries]
