"""$evaluate-measure over HTTP with auth on: admin figures, committee suppression, bad input."""

from __future__ import annotations

from typing import Any

from fhir_server.analytics.measures.report import DATA_ABSENT, EXT_SUPPRESSED
from fhir_server.synthetic.config import DEFAULT_REFERENCE_DATE
from tests.analytics.population import load_population
from tests.security.conftest import World

PERIOD = (
    f"periodStart={DEFAULT_REFERENCE_DATE.year - 1}-01-01&periodEnd={DEFAULT_REFERENCE_DATE.year - 1}-12-31"
)


def cells(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every population cell of a report, labelled group / stratifier / stratum / population."""
    out = []
    for g in report["group"]:
        label = g["code"].get("text") or str(g["code"])
        out += [(f"{label}/{p['code']['coding'][0]['code']}", p) for p in g["population"]]
        for s in g.get("stratifier", []):
            for st in s["stratum"]:
                out += [
                    (
                        f"{label}/{s['code'][0]['text']}/{st['value']['text']}/{p['code']['coding'][0]['code']}",
                        p,
                    )
                    for p in st["population"]
                ]
    return out


async def test_committee_gets_small_cells_suppressed(world: World) -> None:
    admin = await world.caller("admin", "Organization/ops", "admin")
    committee = await world.caller("committee", "Organization/ops", "committee")
    await load_population(world.store, seed=31, children=120)
    url = f"Measure/dspm-coverage/$evaluate-measure?{PERIOD}"
    full = await admin.get(url)
    assert full.status_code == 200, full.text
    shown = await committee.get(url)
    assert shown.status_code == 200, shown.text
    report = shown.json()
    assert report["resourceType"] == "MeasureReport" and report["type"] == "summary"
    assert report["period"] == {
        "start": f"{DEFAULT_REFERENCE_DATE.year - 1}-01-01",
        "end": f"{DEFAULT_REFERENCE_DATE.year - 1}-12-31",
    }
    exact = dict(cells(full.json()))
    masked, visible = 0, 0
    for label, cell in cells(report):
        truth = exact[label]["count"]
        if truth < 5:  # each unit is one child in this measure
            assert "count" not in cell, label
            assert {"url": DATA_ABSENT, "valueCode": "masked"} in cell["extension"]
            assert {"url": EXT_SUPPRESSED, "valueString": "<5"} in cell["extension"]
            masked += 1
        else:  # shown, with the cell key's bounded noise (see test_disclosure)
            assert cell["count"] >= 5 and abs(cell["count"] - truth) <= 2, label
            visible += 1
    assert masked and visible
    from fhir_server.validation.validator import validate

    assert [i for i in validate(report, []) if i["severity"] in ("error", "fatal")] == []
    # a score from a masked cell is masked too
    for g in report["group"]:
        for s in g.get("stratifier", []):
            for st in s["stratum"]:
                if any("count" not in p for p in st["population"]):
                    assert "value" not in st.get("measureScore", {})


async def test_committee_may_not_ask_about_one_child(world: World) -> None:
    admin = await world.caller("admin", "Organization/ops", "admin")
    committee = await world.caller("committee", "Organization/ops", "committee")
    written = await load_population(world.store, seed=32, children=10)
    child = next(r["id"] for r in written if r["resourceType"] == "Patient")
    url = f"Measure/dspm-coverage/$evaluate-measure?{PERIOD}&subject=Patient/{child}&reportType=individual"
    assert (await committee.get(url)).status_code == 403
    reply = await admin.get(url)
    assert reply.status_code == 200, reply.text
    assert reply.json()["type"] == "individual"
    assert reply.json()["subject"] == {"reference": f"Patient/{child}"}


async def test_bad_input(world: World) -> None:
    admin = await world.caller("admin", "Organization/ops", "admin")
    replies = {
        "unknown measure": await admin.get(f"Measure/nope/$evaluate-measure?{PERIOD}"),
        "unknown measure url": await admin.get(
            f"Measure/$evaluate-measure?{PERIOD}&measure=https://example.org/Measure/x"
        ),
        "malformed start": await admin.get(
            "Measure/dspm-coverage/$evaluate-measure?periodStart=2025-13-01&periodEnd=2025-12-31"
        ),
        "malformed end": await admin.get(
            "Measure/dspm-coverage/$evaluate-measure?periodStart=2025-01-01&periodEnd=last+year"
        ),
        "missing end": await admin.get("Measure/dspm-coverage/$evaluate-measure?periodStart=2025-01-01"),
        "reversed": await admin.get(
            "Measure/dspm-coverage/$evaluate-measure?periodStart=2025-12-01&periodEnd=2025-01-31"
        ),
        "unknown subject": await admin.get(
            f"Measure/dspm-coverage/$evaluate-measure?{PERIOD}&subject=Patient/nobody"
        ),
        "odd subject": await admin.get(
            f"Measure/dspm-coverage/$evaluate-measure?{PERIOD}&subject=Observation/x"
        ),
        "report type": await admin.get(
            f"Measure/dspm-coverage/$evaluate-measure?{PERIOD}&reportType=everything"
        ),
    }
    expected = {
        "unknown measure": (404, None),
        "unknown measure url": (404, "measure"),
        "malformed start": (400, "periodStart"),
        "malformed end": (400, "periodEnd"),
        "missing end": (400, "periodEnd"),
        "reversed": (400, "periodStart"),
        "unknown subject": (404, "subject"),
        "odd subject": (400, "subject"),
        "report type": (400, "reportType"),
    }
    for name, reply in replies.items():
        status, where = expected[name]
        assert reply.status_code == status, (name, reply.text)
        body = reply.json()
        assert body["resourceType"] == "OperationOutcome"
        if where:
            assert body["issue"][0]["expression"] == [where], name
    bad_rule = {
        "resourceType": "Measure",
        "status": "active",
        "url": "https://example.org/Measure/bad",
        "extension": [
            {
                "url": "https://termtem.org/fhir/StructureDefinition/measure-unit-view",
                "valueString": "children",
            }
        ],
        "scoring": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring", "code": "cohort"}]
        },
        "group": [
            {
                "population": [
                    {
                        "code": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/measure-population",
                                    "code": "initial-population",
                                }
                            ]
                        },
                        "criteria": {"language": "text/x-termtem-rule", "expression": "shoe_size > 3"},
                    }
                ]
            }
        ],
    }
    created = await admin.post("Measure", bad_rule)
    assert created.status_code == 201, created.text
    reply = await admin.get(f"Measure/{created.json()['id']}/$evaluate-measure?{PERIOD}")
    assert reply.status_code == 422
    assert reply.json()["issue"][0]["expression"] == ["Measure.group[0].population[0].criteria.expression"]
    assert "shoe_size" in reply.json()["issue"][0]["diagnostics"]


def test_shipped_measures_and_the_reports_are_valid_r4() -> None:
    from fhir_server.analytics.measures.library import shipped_measures
    from fhir_server.validation.validator import validate

    for measure in shipped_measures():
        errors = [i for i in validate(measure, []) if i["severity"] in ("error", "fatal")]
        assert errors == [], (measure["id"], errors)


async def test_other_roles_count_what_they_may_see(world: World) -> None:
    from fhir_server.security.access import OWNER_TAG_SYSTEM

    # no consents: this agency sees exactly the records it wrote
    written = await load_population(world.store, seed=33, children=200, tag_owners=True, consents=False)

    def owner(resource: dict[str, Any]) -> str | None:
        return next(
            (t["code"] for t in resource.get("meta", {}).get("tag", []) if t["system"] == OWNER_TAG_SYSTEM),
            None,
        )

    # The mothers' Patients (the generator's birth records, as the 43-file mapper makes them) carry
    # their health centre's PID; the children's do not.
    children = [
        r
        for r in written
        if r["resourceType"] == "Patient" and not any(i["system"].endswith("/PID") for i in r["identifier"])
    ]
    centre = max({owner(c) for c in children}, key=lambda o: sum(owner(c) == o for c in children))
    assert centre is not None
    caller = await world.caller("centre", centre, "health-centre")
    reply = await caller.get(f"Measure/dspm-suspected-delay/$evaluate-measure?{PERIOD}")
    assert reply.status_code == 200, reply.text
    year = DEFAULT_REFERENCE_DATE.year - 1
    # with plain loops: children this centre wrote, screened in the year by this centre
    assert len(children) == 200
    screened = set()
    for o in written:
        if (
            o["resourceType"] == "Observation"
            and owner(o) == centre
            and "th-developmental-screening" in str(o.get("meta", {}).get("profile"))
            and o["effectiveDateTime"].startswith(str(year))
        ):
            screened.add(o["subject"]["reference"].split("/")[1])
    mine = {c["id"] for c in children if owner(c) == centre}
    expected = len(screened & mine)
    assert expected > 0
    got = reply.json()["group"][0]["population"][0]["count"]
    assert got == expected
    admin = await world.caller("admin", "Organization/ops", "admin")
    everything = (await admin.get(f"Measure/dspm-suspected-delay/$evaluate-measure?{PERIOD}")).json()
    assert everything["group"][0]["population"][0]["count"] > got
