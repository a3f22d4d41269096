"""The one exception type for every FHIR failure; the HTTP layer turns it into an OperationOutcome."""

from __future__ import annotations

from typing import Any


class FhirError(Exception):
    """A failure that the client should see as an OperationOutcome with ``status``.

    ``code`` is an IssueType code (invalid, not-found, conflict, ...). ``expression`` lists FHIRPath
    locations of the offending elements. ``issues`` lets a caller pass several prepared issues at once
    (for example a validator's findings); when given, ``diagnostics`` heads the list.
    """

    def __init__(
        self,
        status: int,
        diagnostics: str,
        *,
        code: str = "invalid",
        expression: list[str] | None = None,
        issues: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.code = code
        self.expression = expression
        self.extra_issues = issues or []
        self.headers = headers or {}

    def outcome(self) -> dict[str, Any]:
        """The OperationOutcome resource describing this failure."""
        if self.extra_issues:
            return operation_outcome(self.extra_issues)
        issue: dict[str, Any] = {"severity": "error", "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = self.expression
        return operation_outcome([issue])


def operation_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": issues}


def information_outcome(text: str, code: str = "informational") -> dict[str, Any]:
    return operation_outcome([{"severity": "information", "code": code, "diagnostics": text}])


def bad_request(diagnostics: str, expression: list[str] | None = None, code: str = "invalid") -> FhirError:
    return FhirError(400, diagnostics, code=code, expression=expression)


def not_found(diagnostics: str) -> FhirError:
    return FhirError(404, diagnostics, code="not-found")
