"""The child index: a de-identified export's per-child knowledge on disk (its memory stays flat).

Its k-anonymity decisions are exactly the reference method's (``kanon.generalise``), a child registered
by several agencies counts once with its first record, and a page asks only for the Patients it names:
every shape of reference to a Patient (relative, absolute, versioned) is found.
"""

from __future__ import annotations

import random
from pathlib import Path

from fhir_server.export import kanon
from fhir_server.export.children import ChildIndex, named_patients
from fhir_server.export.deid import SUPPRESSED


def _elements(rng: random.Random) -> tuple[str, str, str, str]:
    born = f"{rng.randint(2016, 2021)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    district = rng.choice(("1011", "1004", "1050", "5001", "5002", "7301"))
    return born, rng.choice(("male", "female")), district, district[:2]


def _values(key: str, _id: str, birth: str | None, *rest: str | None) -> kanon.QuasiIdentifiers:
    gender, district, province = rest
    return (str(birth)[:7], str(gender), str(district), str(province))


def test_generalisation_in_sql_is_the_reference_method(tmp_path: Path) -> None:
    rng = random.Random(15)
    for k in (2, 5, 11):
        index = ChildIndex(tmp_path, fresh=True)
        rows = [(f"p{n}", *_elements(rng)) for n in range(600)]
        index.add_patients(rows)
        suppressed, generalised, merged = index.generalise(k, _values)
        expected = kanon.generalise([(r[0], _values(r[0], r[0], *r[1:])) for r in rows], k)
        found = index.for_page({r[0] for r in rows}).levels
        assert found == {child: level for child, level in expected.items() if level}
        assert suppressed == sum(1 for v in expected.values() if v == SUPPRESSED)
        assert generalised == sum(1 for v in expected.values() if 0 < v < SUPPRESSED)
        assert merged == 0 and generalised > 0 and 0 < suppressed < 600
        index.close()


def test_a_child_with_records_at_two_agencies_counts_once(tmp_path: Path) -> None:
    index = ChildIndex(tmp_path, fresh=True)
    rng = random.Random(3)
    same = ("2020-01-10", "male", "1011", "10")
    index.add_patients([("cc-kitti", *same), ("other", *same), ("hosp-kitti", *same)])
    index.add_patients([(f"x{n}", *_elements(rng)) for n in range(20)])
    index.add_links(
        [("cc-kitti", "golden-kitti"), ("hosp-kitti", "golden-kitti"), ("golden-kitti", "golden-kitti")]
    )
    _, _, merged = index.generalise(2, _values)
    assert merged == 1
    page = index.for_page({"cc-kitti", "hosp-kitti", "other"})
    # the first record in storage order stands for the child; the other is folded into it
    assert page.merged == frozenset({"hosp-kitti"})
    assert page.same_child == {"cc-kitti": "golden-kitti", "hosp-kitti": "golden-kitti"}
    # two children in the cell (Kitti once, "other"), not three records: k=2 keeps them, k=3 would not
    assert "golden-kitti" not in page.levels and "other" not in page.levels
    index.generalise(3, _values)
    assert index.for_page({"cc-kitti"}).levels.get("golden-kitti", 0) != 0
    index.close()


def test_a_page_names_every_patient_it_refers_to() -> None:
    page = [
        ("o1", b'{"subject":{"reference":"Patient/a"},"performer":[{"reference":"Practitioner/x"}]}'),
        ("o2", b'{"patient":{"reference":"https://h.example/fhir/Patient/b-2.x/_history/3"}}'),
        ("o3", b'{"focus":[{"reference":"Patient/c"}],"note":[{"text":"see Patient/d there"}]}'),
    ]
    assert named_patients(page, "Observation") >= {"a", "b-2.x", "c"}
    assert "x" not in named_patients(page, "Observation")
    assert named_patients([("p1", b'{"link":[{"other":{"reference":"Patient/p2"}}]}')], "Patient") == {
        "p1",
        "p2",
    }


def test_an_audited_child_is_named_once(tmp_path: Path) -> None:
    index = ChildIndex(tmp_path, fresh=True)
    assert index.unaudited({"a", "b"}) == {"a", "b"}
    index.audited(["a"])
    assert index.unaudited({"a", "b"}) == {"b"}
    index.close()
    # a resumed export reads the same file: what was audited stays audited
    again = ChildIndex(tmp_path)
    assert again.unaudited({"a", "b"}) == {"b"}
    again.close()
