"""The PDPA decision on single Consents (pure functions)."""

from __future__ import annotations

from fhir_server.search.values import date_range
from fhir_server.security.consent import AccessRequest, decide
from tests.security.scene import consent

NOW = date_range("2025-06-01T00:00:00Z")[0]  # type: ignore[index]
SCHOOL = AccessRequest("Organization/school1", "school", "COC", NOW)


def test_permit_by_actor_and_by_agency_type() -> None:
    assert decide(consent("c", actors=("Organization/school1",)), SCHOOL, "growth") == "permit"
    assert decide(consent("c", agency_types=("school",)), SCHOOL, "growth") == "permit"
    assert decide(consent("c", agency_types=("hospital",)), SCHOOL, "growth") is None
    assert decide(consent("c", actors=("Organization/school2",)), SCHOOL, "growth") is None


def test_purpose_class_and_period_must_all_match() -> None:
    assert decide(consent("c", agency_types=("school",), purposes=("TREAT",)), SCHOOL, "growth") is None
    assert decide(consent("c", agency_types=("school",)), SCHOOL, "health-condition") is None
    expired = consent("c", agency_types=("school",), period=("2020-01-01", "2024-12-31"))
    assert decide(expired, SCHOOL, "growth") is None
    future = consent("c", agency_types=("school",), period=("2026-01-01", None))
    assert decide(future, SCHOOL, "growth") is None
    last_day = consent("c", agency_types=("school",), period=("2020-01-01", "2025-06-01"))
    assert decide(last_day, SCHOOL, "growth") == "permit"


def test_only_active_consents_count() -> None:
    for status in ("inactive", "rejected", "proposed", "entered-in-error", "draft"):
        assert decide(consent("c", agency_types=("school",), status=status), SCHOOL, "growth") is None


def test_deny_wins_over_permit() -> None:
    nested = [
        {
            "type": "deny",
            "code": [
                {
                    "coding": [
                        {"system": "https://termtem.org/fhir/CodeSystem/th-data-class", "code": "development"}
                    ]
                }
            ],
        }
    ]
    mixed = consent("c", agency_types=("school",), nested=nested)
    assert decide(mixed, SCHOOL, "growth") == "permit"
    assert decide(mixed, SCHOOL, "development") == "deny"


def test_criteria_free_root_is_only_a_default() -> None:
    nested = [
        {
            "type": "permit",
            "actor": [{"reference": {"reference": "Organization/school1"}}],
            "code": [
                {
                    "coding": [
                        {"system": "https://termtem.org/fhir/CodeSystem/th-data-class", "code": "growth"}
                    ]
                }
            ],
        }
    ]
    deny_all_but = consent("c", kind="deny", purposes=(), classes=(), period=(None, None), nested=nested)
    assert decide(deny_all_but, SCHOOL, "growth") == "permit"
    assert decide(deny_all_but, SCHOOL, "development") == "deny"
    other = AccessRequest("Organization/school2", "school", "COC", NOW)
    assert decide(deny_all_but, other, "growth") == "deny"


def test_unchecked_criteria_fail_closed() -> None:
    permit = consent("c", agency_types=("school",))
    permit["provision"]["dataPeriod"] = {"start": "2024-01-01"}
    assert decide(permit, SCHOOL, "growth") is None
    deny = consent(
        "c", agency_types=("school",), nested=[{"type": "deny", "class": [{"code": "Observation"}]}]
    )
    assert decide(deny, SCHOOL, "growth") == "deny"
