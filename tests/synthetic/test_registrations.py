"""One child registered by several agencies: counts, determinism, the kinds of noise, and twins."""

from __future__ import annotations

from collections import Counter, defaultdict

from fhir_server import canonical
from fhir_server.identity.identifiers import is_valid_cid
from fhir_server.synthetic.registrations import NoiseConfig, registrations


def _cid(patient: dict) -> str | None:
    return next(
        (i["value"] for i in patient.get("identifier", []) if i["system"] == canonical.CID_SYSTEM), None
    )


def test_each_child_is_registered_by_two_to_four_agencies_deterministically() -> None:
    first = list(registrations(3, 150))
    again = list(registrations(3, 150))
    assert [r.patient for r in first] == [r.patient for r in again]
    per_child: dict[str, list[str]] = defaultdict(list)
    for registration in first:
        per_child[registration.child].append(registration.agency.id)
    assert set(Counter(len(v) for v in per_child.values())) <= {2, 3, 4}
    assert all(len(set(v)) == len(v) for v in per_child.values())  # never twice by one agency
    assert all(r.patient["id"] != r.child for r in first)  # each agency's own record


def test_the_noise_real_registers_have() -> None:
    noise = NoiseConfig(buddhist_year=0.5, cid_typo=0.2, swapped_day_month=0.3, no_prefix=0.3, twins=0.0)
    regs = list(registrations(5, 150, noise=noise))
    births = [r.patient["birthDate"] for r in regs]
    assert any(int(b[:4]) > 2400 for b in births)  # Buddhist-era years
    cids = [c for r in regs if (c := _cid(r.patient))]
    assert any(not is_valid_cid(c) for c in cids) and any(is_valid_cid(c) for c in cids)  # mistyped digits
    texts = {n.get("text", "") for r in regs for n in r.patient["name"]}
    assert any(t.startswith("เด็ก") for t in texts) and any(t.startswith(("ด.ช.", "ด.ญ.")) for t in texts)
    assert any(n.get("use") == "nickname" for r in regs for n in r.patient["name"])
    assert any(len(r.patient["name"]) > 1 and r.patient["name"][1].get("use") == "usual" for r in regs)
    by_child: dict[str, set[str]] = defaultdict(set)
    for r in regs:
        by_child[r.child].add(r.patient["birthDate"][5:])
    assert any(len(days) > 1 for days in by_child.values())  # day and month swapped somewhere
    childcare = [r for r in regs if r.agency.kind == "childcare-centre"]
    assert any(_cid(r.patient) is None for r in childcare)


def test_twins_share_all_but_their_names_and_cids() -> None:
    regs = list(registrations(9, 200, noise=NoiseConfig(twins=0.3)))
    pairs = {frozenset((r.child, r.twin_of)) for r in regs if r.twin_of}
    assert pairs
    for pair in pairs:
        a, b = ([r for r in regs if r.child == c] for c in pair)
        assert {r.patient["birthDate"][:4] for r in a} | {r.patient["birthDate"][:4] for r in b}
        valid_a = {c for r in a if (c := _cid(r.patient)) and is_valid_cid(c)}
        valid_b = {c for r in b if (c := _cid(r.patient)) and is_valid_cid(c)}
        assert not valid_a & valid_b
        given_a = {r.patient["name"][0]["given"][0] for r in a}
        given_b = {r.patient["name"][0]["given"][0] for r in b}
        assert not given_a & given_b


def test_a_leap_day_keeps_its_christian_era_year() -> None:
    """29 February of a leap year is no date in its Buddhist-era year: no client could store it."""
    import random

    from fhir_server.synthetic.registrations import _birth

    always = NoiseConfig(buddhist_year=1.0, swapped_day_month=0.0)
    assert _birth(random.Random(1), "2024-03-01", always, "hospital") == "2567-03-01"
    assert _birth(random.Random(1), "2024-02-29", always, "hospital") == "2024-02-29"
