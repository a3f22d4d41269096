"""Generated resources conform to the Thai profiles they claim: the server refuses them otherwise (422)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fhir_server import canonical
from fhir_server.validation import profiles
from fhir_server.validation.validator import validate

_PER_KIND = 300  # a few hundred of every (resource type, profile) the generator makes


def _kind(resource: dict[str, Any]) -> tuple[str, str]:
    return resource["resourceType"], ",".join(resource.get("meta", {}).get("profile", []))


def test_every_generated_kind_passes_the_profile_validator(resources: list[dict[str, Any]]) -> None:
    by_reference = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    sampled: Counter[tuple[str, str]] = Counter()
    failures: list[tuple[str, str, list[str]]] = []
    for resource in resources:
        kind = _kind(resource)
        if sampled[kind] >= _PER_KIND:
            continue
        sampled[kind] += 1
        # The resolver lets invariants that follow references (the PDPA age rule on Consent) run.
        issues = validate(resource, resolver=by_reference.get)
        errors = [i["diagnostics"] for i in issues if i["severity"] in ("error", "fatal")]
        unchecked = [i["diagnostics"] for i in issues if i["code"] == "not-supported"]
        if errors or unchecked:
            failures.append((*kind, errors + unchecked))
    assert failures[:5] == [], f"{len(failures)} resources fail their profiles"

    profiled = [
        (kind, canonical.structure_definition(profile))
        for kind, profile in (
            ("Organization", canonical.PROFILE_AGENCY),
            ("Patient", canonical.PROFILE_CHILD_PATIENT),
            ("RelatedPerson", canonical.PROFILE_GUARDIAN),
            ("Observation", canonical.PROFILE_GROWTH),
            ("Observation", canonical.PROFILE_DEVELOPMENTAL_SCREENING),
            ("Observation", canonical.PROFILE_WELLBEING),
            ("ServiceRequest", canonical.PROFILE_REFERRAL),
            ("Task", canonical.PROFILE_REFERRAL_TASK),
            ("Consent", canonical.PROFILE_CONSENT),
        )
    ]
    # Every profile the generator claims was sampled, is shipped, and was validated in quantity.
    expected = set(profiled) | {("Observation", ""), ("Immunization", "")}
    assert expected <= set(sampled), expected - set(sampled)
    assert all(profiles.profile(url) is not None for _, url in profiled)
    assert sum(sampled.values()) > 2000
    assert all(sampled[kind] >= 40 for kind in expected), sampled
