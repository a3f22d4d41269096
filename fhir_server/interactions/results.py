"""What an interaction hands back: FHIR facts, which the HTTP layer and bundles turn into responses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.interactions.errors import operation_outcome
from fhir_server.storage.base import StoredResource


def etag(version: int) -> str:
    return f'W/"{version}"'


@dataclass
class Outcome:
    status: int
    # The version written or read, when the interaction is about one resource.
    stored: StoredResource | None = None
    # Any other body (a Bundle, an OperationOutcome, Parameters); may hold orjson.Fragment values.
    body: Any = None
    location: str | None = None
    # Warnings and information about the request (e.g. validation warnings), for Prefer: OperationOutcome.
    issues: list[dict[str, Any]] = field(default_factory=list)

    @property
    def etag(self) -> str | None:
        return etag(self.stored.version) if self.stored else None

    @property
    def last_modified(self) -> str | None:
        return self.stored.last_updated if self.stored else None

    def outcome_resource(self, default_text: str) -> dict[str, Any]:
        issues = self.issues or [
            {"severity": "information", "code": "informational", "diagnostics": default_text}
        ]
        return operation_outcome(issues)


def location(base_url: str, stored: StoredResource) -> str:
    return f"{base_url}/{stored.resource_type}/{stored.id}/_history/{stored.version}"
