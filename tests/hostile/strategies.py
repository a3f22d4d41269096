"""Hypothesis strategies for hostile input: FHIR-shaped bodies mutated at random, raw bytes that are
almost JSON, headers, ids and query strings full of edge cases.

Valid seed resources are mutated (a value replaced by one of the wrong JSON type, a member dropped or
renamed, an empty or unknown member added, a value nested deeper) so that bodies get past the JSON
parser and into validation, search indexing, bundles and security, where type assumptions live.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from hypothesis import strategies as st

EXAMPLES = Path(__file__).resolve().parents[2] / "profiles" / "examples"

# --- values ----------------------------------------------------------------------------------------

_SPECIAL_NUMBERS = [
    0,
    -1,
    1,
    2**31,
    -(2**31) - 1,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    1e308,
    -1e308,
    5e-324,
    -0.0,
    0.1,
]
_SPECIAL_STRINGS = [
    "",
    " ",
    "\t\n",
    "\u0000",
    "\u200b",
    "ก" * 3,
    "ด.ช. สมชาย",
    "../../etc/passwd",
    "%00",
    "%zz",
    "<div xmlns='http://www.w3.org/1999/xhtml'>x</div>",
    "<script>alert(1)</script>",
    "a" * 5_000,
    "9" * 400,
    "2020-02-30",
    "2020-13-45T25:61:61Z",
    "9999-12-31T23:59:59.999999+14:00",
    "0000-01-01",
    "-2020",
    "Patient/",
    "Patient/x/_history/99999999999999999999",
    "#",
    "#missing",
    "urn:uuid:00000000-0000-0000-0000-000000000000",
    "http://evil.example/fhir/Patient/1",
    "Patient?identifier=x",
    "Patient?",
    "http://hl7.org/fhir/StructureDefinition/Patient",
    "https://termtem.org/fhir/StructureDefinition/th-child",
    "https://terms.sil-th.org/id/th-cid",
    "1234567890123",
    "null",
    "true",
    "NaN",
    "{}",
    "[]",
    "a|b|c",
    "$",
    "\\",
    '"',
]


def _deep(depth: int, leaf: Any) -> Any:
    value = leaf
    for n in range(depth):
        value = [value] if n % 2 else {"a": value}
    return value


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from(_SPECIAL_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(_SPECIAL_STRINGS),
)

json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

hostile_values = st.one_of(
    json_values,
    st.builds(_deep, st.integers(min_value=1, max_value=60), scalars),
    st.builds(
        copy.deepcopy,
        st.sampled_from(
            [{}, [], [None], [[]], [{}], {"": 1}, {"_": 1}, {"extension": 5}, {"resourceType": ["X"]}]
        ),
    ),
)


# --- FHIR-shaped bodies ---------------------------------------------------------------------------


def _seed_resources() -> list[dict[str, Any]]:
    seeds = [orjson.loads(p.read_bytes()) for p in sorted(EXAMPLES.glob("*.json"))]
    seeds += [
        {
            "resourceType": "Patient",
            "id": "fuzz-child",
            "identifier": [{"system": "https://terms.sil-th.org/id/th-cid", "value": "1234567890121"}],
            "name": [{"use": "official", "family": "ศรีสุข", "given": ["น้อย"]}],
            "gender": "female",
            "birthDate": "2020-02-03",
            "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]},
            "contained": [{"resourceType": "Organization", "id": "o1", "name": "School"}],
            "managingOrganization": {"reference": "#o1"},
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "weight"},
            "subject": {"reference": "Patient/fuzz-child"},
            "effectiveDateTime": "2024-01-02T03:04:05+07:00",
            "valueQuantity": {
                "value": 12.50,
                "unit": "kg",
                "system": "http://unitsofmeasure.org",
                "code": "kg",
            },
            "component": [{"code": {"text": "c"}, "valueInteger": 3}],
        },
        {
            "resourceType": "Questionnaire",
            "status": "active",
            "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string"}]}],
        },
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "active": True}}],
        },
        {
            "resourceType": "SearchParameter",
            "url": "https://example.org/SearchParameter/fuzz",
            "name": "fuzz",
            "status": "active",
            "description": "fuzz",
            "code": "fuzz",
            "base": ["Patient"],
            "type": "string",
            "expression": "Patient.name.family",
        },
    ]
    return seeds


SEEDS = _seed_resources()
RESOURCE_TYPES = sorted({s["resourceType"] for s in SEEDS})


def _locations(value: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    if isinstance(value, dict):
        for key, child in value.items():
            out.append((value, key))
            _locations(child, out)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.append((value, index))
            _locations(child, out)
    return out


@st.composite
def mutated(draw: st.DrawFn, seed: dict[str, Any] | None = None) -> dict[str, Any]:
    """A seed resource with one to four random mutations."""
    doc = copy.deepcopy(seed if seed is not None else draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        places = _locations(doc, [])
        if not places:
            break
        container, key = draw(st.sampled_from(places))
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "wrap", "rename"]))
        if action == "replace":
            container[key] = copy.deepcopy(draw(hostile_values))  # drawn values may be shared literals
        elif action == "delete":
            del container[key]
        elif action == "wrap":
            container[key] = draw(
                st.sampled_from([[container[key]], {"value": container[key]}, [[container[key]]]])
            )
        elif action == "add" and isinstance(container, dict):
            name = draw(
                st.one_of(
                    st.sampled_from(
                        [
                            "",
                            "_",
                            "_id",
                            "extension",
                            "contained",
                            "id",
                            "meta",
                            "resourceType",
                            "modifierExtension",
                            "_value",
                            "value[x]",
                            "coding",
                        ]
                    ),
                    st.text(max_size=10),
                )
            )
            container[name] = copy.deepcopy(draw(hostile_values))
        elif action == "rename" and isinstance(container, dict):
            container[draw(st.text(max_size=10))] = container.pop(key)
    return doc


_BYTE_EDITS = [
    lambda b: b[: max(1, len(b) // 2)],  # truncated
    lambda b: b"\xef\xbb\xbf" + b,  # byte order mark
    lambda b: b.replace(b":", b":\xff", 1),  # invalid UTF-8
    lambda b: b.replace(b'"', b"'", 2),
    lambda b: b.replace(b"}", b",}", 1),  # trailing comma
    lambda b: b[:-1] + b',"id":"a","id":"b"}' if b.endswith(b"}") else b,  # duplicate keys
    lambda b: b[:-1] + b',"x":NaN}' if b.endswith(b"}") else b,
    lambda b: b[:-1] + b',"x":Infinity}' if b.endswith(b"}") else b,
    lambda b: b[:-1] + b',"x":1e999999}' if b.endswith(b"}") else b,
    lambda b: b[:-1] + b',"x":123456789012345678901234567890}' if b.endswith(b"}") else b,
    lambda b: b[:-1] + b',"x":-0.0e-0}' if b.endswith(b"}") else b,
    lambda b: b[:-1] + b',"x":"\\ud800"}' if b.endswith(b"}") else b,  # lone surrogate escape
    lambda b: b"[" * 2000 + b"]" * 2000,
    lambda b: b'{"a":' * 500 + b"1" + b"}" * 500,
    lambda b: b"",
    lambda b: b"null",
    lambda b: b'"just a string"',
    lambda b: b + b" trailing",
    lambda b: b.replace(b'"resourceType"', b'"resourceType":"Patient","resourceType"', 1),
]


@st.composite
def body_bytes(draw: st.DrawFn, seed: dict[str, Any] | None = None) -> bytes:
    """A body: a mutated resource as JSON, sometimes edited into almost-JSON at the byte level."""
    data = orjson.dumps(draw(mutated(seed)))
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        data = draw(st.sampled_from(_BYTE_EDITS))(data)
    return data


# --- headers, ids, queries -------------------------------------------------------------------------

etags = st.one_of(
    st.sampled_from(
        [
            'W/"1"',
            '"1"',
            "1",
            "*",
            'W/"0"',
            'W/"-1"',
            'W/"1.5"',
            "W/",
            'W/""',
            'W/"١"',
            'W/"²"',
            'W/"99999999999999999999"',
            "9" * 300,
            'W/"1", W/"2"',
        ]
    ),
    st.text(max_size=30).filter(lambda s: "\n" not in s and "\r" not in s),
)
content_types = st.sampled_from(
    [
        "application/fhir+json",
        "application/json",
        "application/fhir+json; charset=utf-8",
        "application/fhir+json; charset=latin-1",
        "application/json-patch+json",
        "application/x-www-form-urlencoded",
        "application/fhir+xml",
        "text/plain",
        "multipart/form-data; boundary=x",
        "",
        ";;;",
        "application/*",
    ]
)
accepts = st.sampled_from(
    [
        "*/*",
        "application/fhir+json",
        "application/fhir+xml",
        "text/html",
        "",
        "application/json;q=0",
        "image/png",
        "application/fhir+json;fhirVersion=3.0",
    ]
)
prefers = st.sampled_from(
    [
        "return=minimal",
        "return=representation",
        "return=OperationOutcome",
        "return=",
        "handling=strict",
        "handling=lenient",
        "respond-async",
        ";;,,",
        "return=bogus",
    ]
)
purposes = st.sampled_from(["", "COC", "ETREAT", "TREAT", "HRESCH", "bogus", "ETREAT;reason"])

ids = st.one_of(
    st.sampled_from(
        [
            "fuzz-child",
            "x",
            "a" * 64,
            "a" * 65,
            ".",
            "..",
            "-",
            "1.2",
            "%2F",
            "%00",
            "ก",
            "a%20b",
            "Patient",
            "_history",
            "$everything",
            "_search",
            "*",
            "%ZZ",
            "%C3%28",
        ]
    ),
    st.text(alphabet="abcAZ019-._~%", min_size=1, max_size=12),
)
versions = st.sampled_from(
    ["1", "0", "-1", "01", "1.0", "99999999999999999999", "9" * 5000, "١", "²", "x", "%31"]
)

_PARAM_NAMES = [
    "_id",
    "_lastUpdated",
    "_count",
    "_offset",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_total",
    "_has",
    "_format",
    "_pretty",
    "_contained",
    "_list",
    "_text",
    "_content",
    "_filter",
    "_type",
    "_since",
    "_at",
    "name",
    "family",
    "given",
    "birthdate",
    "gender",
    "identifier",
    "subject",
    "patient",
    "code",
    "date",
    "value-quantity",
    "status",
    "subject:Patient.name",
    "subject:Patient.birthdate",
    "_has:Observation:subject:code",
    "name:exact",
    "name:contains",
    "name:missing",
    "gender:not",
    "code:in",
    "code:below",
    "code:text",
    "identifier:of-type",
    "subject:missing",
    "general-practitioner",
    "address-city",
    "telecom",
    "phone",
    "email",
    "value-concept",
    "component-code-value-quantity",
    "combo-code-value-quantity",
    "url",
    "version",
    "filter",
    "system",
    "mode",
    "resource",
    "profile",
    "start",
    "end",
    "valueSet",
    "coding",
    "fuzz",
    "",
    "%",
    "a[b]",
    "name:",
    ":exact",
]
_VALUES = [
    "",
    "x",
    "ge2020-01-01",
    "lt2020",
    "sa2020-02-30",
    "eb99999-12-31",
    "2020-13-45",
    "ap1e999",
    "gt-1",
    "5.4|http://unitsofmeasure.org|kg",
    "5.4||kg",
    "1e400",
    "NaN",
    "-0",
    "99999999999999999999",
    "http://loinc.org|29463-7",
    "|x",
    "x|",
    "|",
    "||",
    "a,b,,c",
    "Patient/fuzz-child",
    "Patient/",
    "*",
    "Observation:subject",
    "Observation:subject:Patient",
    "Patient:*",
    "-name",
    "name,-birthdate",
    "_score",
    "true",
    "false",
    "count",
    "data",
    "text",
    "bogus",
    "accurate",
    "estimate",
    "none",
    "0",
    "-1",
    "10001",
    "%zz",
    "%C3%28",
    "%00",
    "%2C",
    "%7C",
    "ก",
    "%E0%B8%81",
    "a\\,b",
    "a\\|b",
    "\\",
    "$",
    "1234567890121",
    "9" * 300,
    "a" * 3000,
]
param_names = st.one_of(st.sampled_from(_PARAM_NAMES), st.text(max_size=8))
param_values = st.one_of(st.sampled_from(_VALUES), st.text(max_size=16))


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    """A raw query string (percent-encodings kept as drawn, valid or not)."""
    parts = []
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        name, value = draw(param_names), draw(param_values)
        if draw(st.booleans()):
            name, value = quote(name, safe=":%._-[]$*,|"), quote(value, safe=":%._-$*,|/")
        else:
            name, value = quote(name, safe="%:._-$*,|[]"), quote(value, safe="%:._-$*,|/\\")
        parts.append(f"{name}={value}" if draw(st.integers(0, 6)) else name)
    return "&".join(parts)
