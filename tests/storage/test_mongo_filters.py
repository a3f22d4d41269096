"""The filter documents MongoDB is asked, pinned for every search feature.

Read these to see what a search costs: every parameter test is one ``$elemMatch`` led by the
parameter key ``k`` (a stable hash of type and code, shown here as K("Type.code")).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest

from fhir_server import definitions
from fhir_server.search.access import Access, Grant
from fhir_server.search.model import param_key
from fhir_server.search.query import CodeSetValue, Include, SortKey, parse_search
from fhir_server.storage.mongo.filters import Resolver, compile_query, value_predicate, visible_filter
from fhir_server.storage.mongo.search import include_filter, keyset_filter, sort_stages

TOP = "\U0010ffff"
LIVE = {"$ne": "DELETE"}


def K(name: str) -> int:
    resource_type, code = name.split(".", 1)
    return param_key(resource_type, code)


class _Recorder:
    """A resolver that records the inner queries of chains and _has and answers with fixed ids."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def resolver(self) -> Resolver:
        async def chain(flt: dict[str, Any]) -> list[str]:
            self.calls.append(("chain", flt))
            return ["t1", "t2"]

        async def has(flt: dict[str, Any], key: int) -> list[str]:
            self.calls.append(("has", (flt, key)))
            return ["Patient/p1"]

        return Resolver(chain, has)


async def compiled(
    resource_type: str | None,
    text: str,
    recorder: _Recorder | None = None,
    compartment: tuple[str, str] | None = None,
    access: Access | None = None,
) -> dict[str, Any]:
    query = parse_search(
        resource_type,
        parse_qsl(text, keep_blank_values=True),
        base_url="http://x/fhir",
        strict=True,
        default_count=10,
        max_count=100,
        compartment=compartment,
    )
    query.access = access
    return await compile_query(query, (recorder or _Recorder()).resolver())


async def clause(resource_type: str, text: str) -> Any:
    flt = await compiled(resource_type, text)
    assert flt["t"] == resource_type and flt["m"] == LIVE
    (only,) = flt["$and"]
    return only


def elem(array: str, key: str, **pred: Any) -> dict[str, Any]:
    return {array: {"$elemMatch": {"k": K(key), **pred}}}


CASES: list[tuple[str, str, Any]] = [
    # string
    ("Patient", "name=mül", elem("xs", "Patient.name", n={"$gte": "mul", "$lt": "mul" + TOP})),
    ("Patient", "family:exact=Müller", elem("xs", "Patient.family", n="muller", e="Müller")),
    ("Patient", "name:contains=a.b", elem("xs", "Patient.name", n={"$regex": "a\\.b"})),
    (
        "Patient",
        "name=ann,bob",
        {
            "xs": {
                "$elemMatch": {
                    "k": K("Patient.name"),
                    "$or": [
                        {"n": {"$gte": "ann", "$lt": "ann" + TOP}},
                        {"n": {"$gte": "bob", "$lt": "bob" + TOP}},
                    ],
                }
            }
        },
    ),
    # token
    ("Patient", "gender=female", elem("xt", "Patient.gender", c="female")),
    ("Patient", "identifier=http://h/hn|42", elem("xt", "Patient.identifier", c="42", s="http://h/hn")),
    ("Patient", "identifier=http://h/hn|", elem("xt", "Patient.identifier", s="http://h/hn")),
    ("Patient", "identifier=|42", elem("xt", "Patient.identifier", c="42", s=None)),
    ("Patient", "gender:not=female", {"$nor": [elem("xt", "Patient.gender", c="female")]}),
    (
        "Patient",
        "identifier:text=national",
        elem("xs", "Patient.identifier:text", n={"$gte": "national", "$lt": "national" + TOP}),
    ),
    (
        "Patient",
        "identifier:of-type=http://t|NI|123",
        elem("xt", "Patient.identifier:of-type", c="NI|123", s="http://t"),
    ),
    (
        "Patient",
        "gender:missing=true",
        {"$nor": [{"xt.k": K("Patient.gender")}, {"xc.xt.k": K("Patient.gender")}]},
    ),
    (
        "Patient",
        "gender:missing=false",
        {"$or": [{"xt.k": K("Patient.gender")}, {"xc.xt.k": K("Patient.gender")}]},
    ),
    # reference
    ("Observation", "subject=Patient/p1", elem("xr", "Observation.subject", i="p1", t="Patient")),
    ("Observation", "patient=p1", elem("xr", "Observation.patient", i="p1")),
    ("Observation", "subject=urn:uuid:1|2", elem("xr", "Observation.subject", u="urn:uuid:1", v="2")),
    ("Observation", "subject:identifier=s|v", elem("xt", "Observation.subject:identifier", c="v", s="s")),
    # date: [l, h] is the entry range in epoch ms; the query 2019 is [1546300800000, 1577836799999]
    (
        "Patient",
        "birthdate=2019",
        elem("xd", "Patient.birthdate", l={"$gte": 1546300800000}, h={"$lte": 1577836799999}),
    ),
    (
        "Patient",
        "birthdate=ne2019",
        elem(
            "xd",
            "Patient.birthdate",
            **{"$or": [{"l": {"$lt": 1546300800000}}, {"h": {"$gt": 1577836799999}}]},
        ),
    ),
    ("Patient", "birthdate=gt2019", elem("xd", "Patient.birthdate", h={"$gt": 1577836799999})),
    ("Patient", "birthdate=lt2019", elem("xd", "Patient.birthdate", l={"$lt": 1546300800000})),
    (
        "Patient",
        "birthdate=ge2019",
        elem(
            "xd",
            "Patient.birthdate",
            **{
                "$or": [
                    {"h": {"$gt": 1577836799999}},
                    {"l": {"$gte": 1546300800000}, "h": {"$lte": 1577836799999}},
                ]
            },
        ),
    ),
    ("Patient", "birthdate=sa2019", elem("xd", "Patient.birthdate", l={"$gt": 1577836799999})),
    ("Patient", "birthdate=eb2019", elem("xd", "Patient.birthdate", h={"$lt": 1546300800000})),
    # number (implicit precision: 5 means [4.5, 5.5))
    (
        "RiskAssessment",
        "probability=5",
        elem("xn", "RiskAssessment.probability", l={"$gte": 4.5}, h={"$lt": 5.5}),
    ),
    ("RiskAssessment", "probability=gt5", elem("xn", "RiskAssessment.probability", h={"$gt": 5.0})),
    (
        "RiskAssessment",
        "probability=ap5",
        elem("xn", "RiskAssessment.probability", l={"$lte": 5.5}, h={"$gte": 4.5}),
    ),
    # quantity: no unit, a non-canonical unit, a UCUM unit compared in canonical form (12 kg = 12000 g)
    ("Observation", "value-quantity=le12", elem("xq", "Observation.value-quantity", l={"$lte": 12.0})),
    (
        "Observation",
        "value-quantity=12||kg",
        elem("xq", "Observation.value-quantity", c="kg", l={"$gte": 11.5}, h={"$lt": 12.5}),
    ),
    (
        "Observation",
        "value-quantity=12|http://unitsofmeasure.org|kg",
        elem("xq", "Observation.value-quantity", cc="g", cl={"$gte": 11500.0}, ch={"$lt": 12500.0}),
    ),
    # uri
    ("ValueSet", "url=http://a/b", elem("xu", "ValueSet.url", u="http://a/b")),
    (
        "ValueSet",
        "url:below=http://a",
        elem("xu", "ValueSet.url", u={"$gte": "http://a", "$lt": "http://a" + TOP}),
    ),
    (
        "ValueSet",
        "url:above=http:",
        elem("xu", "ValueSet.url", u={"$in": ["h", "ht", "htt", "http", "http:"]}),
    ),
    # composite: both components inside one group
    (
        "Observation",
        "code-value-quantity=http://loinc.org|29463-7$gt10",
        {
            "xc": {
                "$elemMatch": {
                    "$and": [
                        {
                            "xt": {
                                "$elemMatch": {
                                    "k": K("Observation.code-value-quantity#0"),
                                    "c": "29463-7",
                                    "s": "http://loinc.org",
                                }
                            }
                        },
                        {
                            "xq": {
                                "$elemMatch": {
                                    "k": K("Observation.code-value-quantity#1"),
                                    "h": {"$gt": 10.0},
                                }
                            }
                        },
                    ]
                }
            }
        },
    ),
    # resource columns
    ("Patient", "_id=a,b", {"i": {"$in": ["a", "b"]}}),
    (
        "Patient",
        "_lastUpdated=2000",
        {"lu": {"$gte": "2000-01-01T00:00:00.000Z", "$lte": "2000-12-31T23:59:59.999Z"}},
    ),
    ("Patient", "_lastUpdated=gt2000", {"lu": {"$gt": "2000-12-31T23:59:59.999Z"}}),
    ("Patient", "_id:missing=true", {"_id": {"$in": []}}),
    # hostile values stay operands
    ("Patient", "gender=$where", elem("xt", "Patient.gender", c="$where")),
    (
        "Patient",
        'family:exact={"$ne": null}',
        elem("xs", "Patient.family", n='{"$ne": null}', e='{"$ne": null}'),
    ),
    ("Patient", "name:contains=$ne.*", elem("xs", "Patient.name", n={"$regex": "\\$ne\\.\\*"})),
]


@pytest.mark.parametrize(("rtype", "text", "expected"), CASES, ids=[f"{t}?{q}" for t, q, _ in CASES])
async def test_condition_filters(rtype: str, text: str, expected: Any) -> None:
    assert await clause(rtype, text) == expected


async def test_conditions_are_anded_under_the_type_and_liveness() -> None:
    assert await compiled("Patient", "gender=male&birthdate=gt2019") == {
        "t": "Patient",
        "m": LIVE,
        "$and": [
            elem("xt", "Patient.gender", c="male"),
            elem("xd", "Patient.birthdate", h={"$gt": 1577836799999}),
        ],
    }
    assert await compiled("Patient", "") == {"t": "Patient", "m": LIVE}
    assert await compiled(None, "_type=Patient,Group&_id=x") == {
        "t": {"$in": ["Patient", "Group"]},
        "m": LIVE,
        "$and": [{"i": {"$in": ["x"]}}],
    }


def test_code_set_values() -> None:
    assert value_predicate("token", CodeSetValue((("http://s", "a"), (None, "b")))) == {
        "$or": [{"c": "a", "s": "http://s"}, {"c": "b", "s": None}]
    }
    assert value_predicate("token", CodeSetValue(())) == {"c": {"$in": []}}


async def test_chain_runs_the_inner_query_first() -> None:
    recorder = _Recorder()
    flt = await compiled("Observation", "subject:Patient.name=anna", recorder)
    assert recorder.calls == [
        (
            "chain",
            {
                "t": "Patient",
                "m": LIVE,
                "$and": [elem("xs", "Patient.name", n={"$gte": "anna", "$lt": "anna" + TOP})],
            },
        )
    ]
    assert flt["$and"] == [
        {"xr": {"$elemMatch": {"k": K("Observation.subject"), "t": "Patient", "i": {"$in": ["t1", "t2"]}}}}
    ]


async def test_has_collects_reference_targets() -> None:
    recorder = _Recorder()
    flt = await compiled("Patient", "_has:Observation:patient:code=8302-2", recorder)
    assert recorder.calls == [
        (
            "has",
            (
                {"t": "Observation", "m": LIVE, "$and": [elem("xt", "Observation.code", c="8302-2")]},
                K("Observation.patient"),
            ),
        )
    ]
    assert flt["$and"] == [{"_id": {"$in": ["Patient/p1"]}}]


async def test_compartment() -> None:
    flt = await compiled("Encounter", "", compartment=("Patient", "p1"))
    (only,) = flt["$and"]
    match = only["xr"]["$elemMatch"]
    assert match["i"] == "p1" and match["t"] == "Patient"
    assert K("Encounter.patient") in match["k"]["$in"]
    flt = await compiled("Patient", "", compartment=("Patient", "p1"))
    assert flt["$and"] == [{"t": "Patient", "i": "p1"}]


def test_sort_by_parameter_computes_lowest_value_and_missing_flag() -> None:
    key = SortKey("birthdate", "date", K("Patient.birthdate"), descending=True)
    assert sort_stages((key,)) == [
        {
            "$addFields": {
                "_a0": {
                    "$map": {
                        "input": {
                            "$filter": {
                                "input": {"$ifNull": ["$xd", []]},
                                "as": "e",
                                "cond": {"$eq": ["$$e.k", K("Patient.birthdate")]},
                            }
                        },
                        "as": "e",
                        "in": "$$e.h",
                    }
                }
            }
        },
        {"$addFields": {"_k0": {"$max": "$_a0"}}},
        {"$addFields": {"_m0": {"$cond": [{"$eq": [{"$ifNull": ["$_k0", None]}, None]}, 1, 0]}}},
    ]
    assert sort_stages((SortKey("_id", None, 0, False),)) == []


def test_keyset_after_a_cursor() -> None:
    sort = (SortKey("family", "string", 1, False), SortKey("_lastUpdated", None, 0, True))
    assert keyset_filter(sort, {"k": ["smith", "2026-01-01T00:00:00.000Z"], "r": 7}, backwards=False) == {
        "$or": [
            {"_m0": {"$gt": 0}},
            {"_m0": 0, "_k0": {"$gt": "smith"}},
            {"_m0": 0, "_k0": "smith", "lu": {"$lt": "2026-01-01T00:00:00.000Z"}},
            {"_m0": 0, "_k0": "smith", "lu": "2026-01-01T00:00:00.000Z", "rid": {"$gt": 7}},
        ]
    }
    # a missing value: only the rows after it among the missing ones
    assert keyset_filter(sort[:1], {"k": [None], "r": 7}, backwards=False) == {
        "$or": [{"_m0": {"$gt": 1}}, {"_m0": 1, "_k0": None, "rid": {"$gt": 7}}]
    }
    assert keyset_filter((), {"k": [], "r": 7}, backwards=True) == {"rid": {"$lt": 7}}


def test_include_filters() -> None:
    frontier = [
        {
            "_id": "Observation/o1",
            "t": "Observation",
            "i": "o1",
            "xr": [
                {"k": K("Observation.patient"), "t": "Patient", "i": "p1"},
                {"k": K("Observation.performer"), "t": "Practitioner", "i": "d1"},
                {"k": K("Observation.subject"), "u": "urn:uuid:9"},
            ],
        }
    ]
    forward = Include("Observation", (K("Observation.patient"),), None, False, "Observation:patient")
    assert include_filter(forward, frontier, reverse=False) == {"_id": {"$in": ["Patient/p1"]}, "m": LIVE}
    everything = Include(None, (), None, False, "*")
    assert include_filter(everything, frontier, reverse=False) == {
        "_id": {"$in": ["Patient/p1", "Practitioner/d1"]},
        "m": LIVE,
    }
    reverse = Include("Provenance", (K("Provenance.target"),), None, False, "Provenance:target")
    assert include_filter(reverse, frontier, reverse=True) == {
        "xr": {
            "$elemMatch": {"k": {"$in": [K("Provenance.target")]}, "t": "Observation", "i": {"$in": ["o1"]}}
        },
        "m": LIVE,
        "t": "Provenance",
    }
    assert include_filter(Include("Patient", (), None, False, "Patient:*"), frontier, reverse=False) is None


# --- consent enforcement: the access restriction, as SQLite's visible() builds it ------------------

OWNER_SYSTEM = "https://termtem.example/tag/writing-agency"
GROWTH, WELLBEING = "http://p/growth", "http://p/wellbeing"
ACCESS = Access(
    types=frozenset({"Patient", "Observation", "Organization", "Encounter", "Group"}),
    open_types=frozenset({"Organization", "Practitioner"}),
    owner_system=OWNER_SYSTEM,
    owner_code="Organization/school1",
    owner_keys={t: K(f"{t}._tag") for t in ("Patient", "Observation", "Encounter", "Group", "Organization")},
    grants=(
        Grant("Patient", (), frozenset({"c2", "c1"})),
        Grant(
            "Observation",
            (K("Observation.subject"), K("Observation.patient")),
            frozenset({"c1"}),
            K("Observation._profile"),
            (GROWTH,),
        ),
        Grant(
            "Observation",
            (K("Observation.subject"), K("Observation.patient")),
            frozenset({"c2"}),
            K("Observation._profile"),
            (),
            (GROWTH, WELLBEING),
        ),
        Grant("Encounter", (K("Encounter.patient"),), frozenset()),  # no child consented: dropped
    ),
)


def owned(*types: str) -> dict[str, Any]:
    keys = [K(f"{t}._tag") for t in types]
    return {"xt": {"$elemMatch": {"k": {"$in": keys}, "c": "Organization/school1", "s": OWNER_SYSTEM}}}


PATIENT_VISIBLE = {
    "t": {"$in": ["Patient"]},
    "$or": [owned("Patient"), {"t": "Patient", "i": {"$in": ["c1", "c2"]}}],
}
OBSERVATION_VISIBLE = {
    "t": {"$in": ["Observation"]},
    "$or": [
        owned("Observation"),
        {
            "t": "Observation",
            "xr": {
                "$elemMatch": {
                    "k": {"$in": [K("Observation.subject"), K("Observation.patient")]},
                    "t": "Patient",
                    "i": {"$in": ["c1"]},
                }
            },
            "xu": {"$elemMatch": {"k": K("Observation._profile"), "u": {"$in": [GROWTH]}}},
        },
        {
            "t": "Observation",
            "xr": {
                "$elemMatch": {
                    "k": {"$in": [K("Observation.subject"), K("Observation.patient")]},
                    "t": "Patient",
                    "i": {"$in": ["c2"]},
                }
            },
            "$nor": [
                {"xu": {"$elemMatch": {"k": K("Observation._profile"), "u": {"$in": [GROWTH, WELLBEING]}}}}
            ],
        },
    ],
}


def test_visible_filter_by_type() -> None:
    # a child's own record: its id; other patient data: the Patient reference and the data class profile
    assert visible_filter(ACCESS, ("Patient",)) == PATIENT_VISIBLE
    assert visible_filter(ACCESS, ("Observation",)) == OBSERVATION_VISIBLE
    # open types need neither ownership nor consent; types not readable at all drop out of the list
    assert visible_filter(ACCESS, ("Organization", "Practitioner")) == {
        "t": {"$in": ["Organization"]},
        "$or": [{"t": {"$in": ["Organization"]}}],
    }
    # a grant with no consented child adds nothing: only the caller's own Encounters remain
    assert visible_filter(ACCESS, ("Encounter",)) == {
        "t": {"$in": ["Encounter"]},
        "$or": [owned("Encounter")],
    }
    # nothing readable at all, or nothing that could be visible: no document
    assert visible_filter(ACCESS, ("Practitioner",)) == {"_id": {"$in": []}}
    no_owner = Access(types=None, owner_keys=ACCESS.owner_keys, grants=ACCESS.grants)
    assert visible_filter(no_owner, ("Group",)) == {"_id": {"$in": []}}
    # every patient (emergency grant): the type alone
    everyone = Access(types=None, grants=(Grant("Encounter", (K("Encounter.patient"),), None),))
    assert visible_filter(everyone, ("Encounter",)) == {
        "t": {"$in": ["Encounter"]},
        "$or": [{"t": "Encounter"}],
    }


def test_visible_filter_for_any_type() -> None:
    # _include:* with no target type: every type the caller may read, in sorted order
    flt = visible_filter(ACCESS, None)
    readable = [t for t in sorted(definitions.resource_types()) if t in ACCESS.types]
    assert flt["t"] == {"$in": readable}
    assert flt["$or"][0] == {"t": {"$in": ["Organization"]}}
    assert flt["$or"][1] == owned(*(t for t in readable if t != "Organization"))
    assert flt["$or"][2:] == PATIENT_VISIBLE["$or"][1:] + OBSERVATION_VISIBLE["$or"][1:]


async def test_restricted_query_adds_visibility_last() -> None:
    assert await compiled("Patient", "gender=female", access=ACCESS) == {
        "t": "Patient",
        "m": LIVE,
        "$and": [elem("xt", "Patient.gender", c="female"), PATIENT_VISIBLE],
    }
    assert await compiled("Patient", "", access=ACCESS) == {
        "t": "Patient",
        "m": LIVE,
        "$and": [PATIENT_VISIBLE],
    }
    flt = await compiled(None, "_type=Patient,Practitioner", access=ACCESS)
    assert flt["$and"] == [visible_filter(ACCESS, ("Patient", "Practitioner"))] == [PATIENT_VISIBLE]


async def test_restricted_chain_and_has_see_only_visible_inner_resources() -> None:
    recorder = _Recorder()
    await compiled("Observation", "subject:Patient.name=anna", recorder, access=ACCESS)
    assert recorder.calls == [
        (
            "chain",
            {
                "t": "Patient",
                "m": LIVE,
                "$and": [
                    elem("xs", "Patient.name", n={"$gte": "anna", "$lt": "anna" + TOP}),
                    PATIENT_VISIBLE,
                ],
            },
        )
    ]
    recorder = _Recorder()
    await compiled("Patient", "_has:Observation:patient:code=8302-2", recorder, access=ACCESS)
    assert recorder.calls == [
        (
            "has",
            (
                {
                    "t": "Observation",
                    "m": LIVE,
                    "$and": [elem("xt", "Observation.code", c="8302-2"), OBSERVATION_VISIBLE],
                },
                K("Observation.patient"),
            ),
        )
    ]
    # nested in an OR of alternatives (several chains on one parameter) the restriction still applies
    recorder = _Recorder()
    await compiled("Observation", "subject:Patient.name=anna,bob", recorder, access=ACCESS)
    assert recorder.calls and all(flt["$and"][-1] == PATIENT_VISIBLE for _, flt in recorder.calls)


def test_restricted_include_filters() -> None:
    frontier = [
        {
            "_id": "Observation/o1",
            "t": "Observation",
            "i": "o1",
            "xr": [{"k": K("Observation.patient"), "t": "Patient", "i": "p1"}],
        }
    ]
    forward = Include(
        "Observation", (K("Observation.patient"),), "Patient", False, "Observation:patient:Patient"
    )
    assert include_filter(forward, frontier, reverse=False, access=ACCESS) == {
        "_id": {"$in": ["Patient/p1"]},
        "m": LIVE,
        "$and": [PATIENT_VISIBLE],
    }
    untyped = Include("Observation", (K("Observation.patient"),), None, False, "Observation:patient")
    assert include_filter(untyped, frontier, reverse=False, access=ACCESS)["$and"] == [
        visible_filter(ACCESS, None)
    ]
    reverse = Include("Observation", (K("Observation.subject"),), None, False, "Observation:subject")
    patients = [{"_id": "Patient/p1", "t": "Patient", "i": "p1"}]
    assert include_filter(reverse, patients, reverse=True, access=ACCESS) == {
        "xr": {
            "$elemMatch": {"k": {"$in": [K("Observation.subject")]}, "t": "Patient", "i": {"$in": ["p1"]}}
        },
        "m": LIVE,
        "t": "Observation",
        "$and": [OBSERVATION_VISIBLE],
    }
