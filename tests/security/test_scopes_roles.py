"""Scope parsing and the role caps (pure functions)."""

from __future__ import annotations

import pytest

from fhir_server.security import roles
from fhir_server.security.scopes import ScopeSet, parse_scope
from fhir_server.security.tokens import role_cap


def test_v2_and_v1_scopes() -> None:
    scopes = ScopeSet.parse("system/Patient.rs system/Observation.read system/Task.write")
    assert scopes.allows("Patient", "r") and scopes.allows("Patient", "s")
    assert not scopes.allows("Patient", "c")
    assert scopes.allows("Observation", "s") and not scopes.allows("Observation", "u")
    assert scopes.allows("Task", "c") and scopes.allows("Task", "d") and not scopes.allows("Task", "r")
    wildcard = ScopeSet.parse("system/*.cruds")
    assert all(wildcard.allows("Condition", ch) for ch in "cruds")
    assert ScopeSet.parse("system/*.*").allows("Encounter", "d")


@pytest.mark.parametrize(
    "text",
    [
        "patient/Patient.rs",
        "system/Patient.sr",
        "system/Nope.rs",
        "system/Patient.x",
        "user/*.read",
        "system/Patient.rs?category=x",
    ],
)
def test_bad_scopes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_scope(text)


def test_granted_scopes_never_exceed_the_registered_ones() -> None:
    registered = ScopeSet.parse("system/Patient.rs system/Observation.cruds")
    granted = ScopeSet.parse("system/*.cruds").within(registered)
    assert granted.allows("Observation", "d") and granted.allows("Patient", "r")
    assert not granted.allows("Patient", "c") and not granted.allows("Condition", "r")
    assert str(ScopeSet.parse("system/Patient.cruds").within(registered)) == "system/Patient.rs"


def test_role_caps() -> None:
    researcher = roles.get_role("researcher")
    capped = role_cap(ScopeSet.parse("system/*.cruds"), researcher)
    assert str(capped) == "system/*.rs"
    assert not roles.type_allowed(researcher, "Patient", "r")
    assert roles.type_allowed(researcher, "Observation", "s")
    auditor = roles.get_role("auditor")
    assert str(role_cap(ScopeSet.parse("system/*.read"), auditor)) == "system/AuditEvent.rs"
    assert not roles.type_allowed(auditor, "Patient", "r")
    for name in ("hospital", "school", "admin"):
        assert not roles.type_allowed(roles.get_role(name), "AuditEvent", "u")
    assert not roles.type_allowed(roles.get_role("school"), "AuditEvent", "r")
    assert roles.type_allowed(roles.get_role("admin"), "AuditEvent", "r")
    with pytest.raises(ValueError):
        roles.get_role("janitor")
