"""Property-based fuzzing of every interaction, with auth off and on: whatever the body, headers, path
or query string, the answer is below 500, carries no traceback, and every FHIR error is an
OperationOutcome (the token endpoint's errors are OAuth JSON).

Bounded for CI (``TERMTEM_FUZZ_EXAMPLES`` examples per test and auth mode, 40 by default, derandomized so
a run is repeatable); ``HYPOTHESIS_PROFILE=explore TERMTEM_FUZZ_EXAMPLES=2000`` searches further.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.api.app import create_app
from fhir_server.operations.table import OPERATIONS
from tests.conftest import make_settings
from tests.hostile import strategies as hs
from tests.security.conftest import BASE, ORIGIN, World, agency

EXAMPLES = int(os.environ.get("TERMTEM_FUZZ_EXAMPLES", "40"))
settings.register_profile(
    "termtem-ci",
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
settings.register_profile(
    "explore",
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
FUZZ = settings(settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "termtem-ci")))


class Target:
    """The app under fuzzing, with the callers' tokens when auth is on."""

    def __init__(self, http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
        self.http, self.tokens = http, tokens
        self.auth = bool(tokens)

    async def send(
        self,
        method: str,
        url: str,
        *,
        caller: str = "agency",
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        fhir: bool = True,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if self.auth and caller in self.tokens and "Authorization" not in sent:
            sent["Authorization"] = f"Bearer {self.tokens[caller]}"
        # Header values as bytes: non-ASCII ones are sent as a client may send them.
        raw = [(k.encode(), v.encode("utf-8")) for k, v in sent.items()]
        reply = await self.http.request(method, url, content=content, headers=raw)
        check(reply, fhir=fhir)
        return reply


def check(reply: httpx.Response, *, fhir: bool = True) -> None:
    where = f"{reply.request.method} {str(reply.request.url)[:300]}"
    assert reply.status_code < 500, (where, reply.status_code, reply.text[:800])
    assert "Traceback" not in reply.text and 'File "' not in reply.text, (where, reply.text[:800])
    if reply.status_code < 400 or reply.request.method == "HEAD":
        return
    body = reply.json()
    if fhir:
        assert reply.headers["content-type"].startswith("application/fhir+json"), (where, reply.headers)
        assert body["resourceType"] == "OperationOutcome" and body["issue"], (where, body)
        assert all(isinstance(i.get("diagnostics", ""), str) for i in body["issue"])
    else:
        assert isinstance(body.get("error"), str), (where, body)


@pytest.fixture(scope="module", params=["auth-off", "auth-on"])
async def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Target]:
    tmp = tmp_path_factory.mktemp("fuzz")
    auth = request.param == "auth-on"
    app_settings = make_settings(tmp, auth=auth, data_dir=tmp / "data", token_lifetime_seconds=24 * 3600)
    app = create_app(app_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/", timeout=120) as http:
            tokens: dict[str, str] = {}
            if auth:
                world = World(app, http, Path(tmp))
                admin = await world.caller("admin", "Organization/ops", "admin")
                for oid, kind in (("ops", "district-office"), ("hosp", "hospital"), ("school1", "school")):
                    assert (
                        await admin.put(f"{BASE}/Organization/{oid}", agency(oid, kind))
                    ).status_code < 300
                tokens["admin"] = admin.token
                tokens["agency"] = (await world.caller("hospital", "Organization/hosp", "hospital")).token
                tokens["school"] = (await world.caller("school", "Organization/school1", "school")).token
            fuzz = Target(http, tokens)
            child = {
                "resourceType": "Patient",
                "id": "fuzz-child",
                "gender": "female",
                "birthDate": "2020-02-03",
            }
            await fuzz.send(
                "PUT", "Patient/fuzz-child", content=orjson.dumps(child), headers=_json(), caller="admin"
            )
            yield fuzz


def _json(content_type: str = "application/fhir+json") -> dict[str, str]:
    return {"Content-Type": content_type}


callers = st.sampled_from(["agency", "agency", "admin", "school", "nobody"])
resource_types = st.sampled_from([*hs.RESOURCE_TYPES, "Unicorn", "patient", "Resource", "ViewDefinition"])


@FUZZ
@given(data=st.data())
async def test_create_and_update(target: Target, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(hs.SEEDS))
    body = data.draw(hs.body_bytes(seed))
    rtype = data.draw(st.one_of(st.just(seed["resourceType"]), resource_types))
    headers = _json(data.draw(st.one_of(st.just("application/fhir+json"), hs.content_types)))
    if data.draw(st.booleans()):
        headers["Prefer"] = data.draw(hs.prefers)
    caller = data.draw(callers)
    if data.draw(st.booleans()):
        if data.draw(st.booleans()):
            headers["If-None-Exist"] = data.draw(hs.query_strings())
        await target.send("POST", rtype, content=body, headers=headers, caller=caller)
    else:
        if data.draw(st.booleans()):
            headers["If-Match"] = data.draw(hs.etags)
        await target.send("PUT", f"{rtype}/{data.draw(hs.ids)}", content=body, headers=headers, caller=caller)


@FUZZ
@given(data=st.data())
async def test_conditional_interactions(target: Target, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(["PUT", "DELETE", "PATCH", "POST"]))
    rtype = data.draw(resource_types)
    url = f"{rtype}?{data.draw(hs.query_strings())}"
    headers = _json()
    if method == "PATCH":
        headers = _json("application/json-patch+json")
        body = orjson.dumps([{"op": "replace", "path": "/active", "value": data.draw(hs.hostile_values)}])
    elif method == "DELETE":
        body = None
    else:
        body = data.draw(hs.body_bytes())
    if method == "POST":
        url, headers["If-None-Exist"] = rtype, data.draw(hs.query_strings())
    await target.send(method, url, content=body, headers=headers, caller=data.draw(callers))


_PATCH_OPS = st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus", "", None, 5])
_POINTERS = st.one_of(
    st.sampled_from(
        [
            "/active",
            "/name/0/family",
            "/name/-",
            "/name/99",
            "/name/-1",
            "/name/01",
            "/",
            "",
            "name",
            "/~1",
            "/~2",
            "/a~0b",
            "/id",
            "/resourceType",
            "/meta/versionId",
            "/extension/0/extension/0",
            "/contained/0",
            "/birthDate",
            "/telecom/0/value",
        ]
    ),
    st.text(max_size=12),
)


@FUZZ
@given(data=st.data())
async def test_patch(target: Target, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        ops = data.draw(
            st.lists(
                st.fixed_dictionaries(
                    {"op": _PATCH_OPS, "path": _POINTERS},
                    optional={"value": hs.hostile_values, "from": _POINTERS},
                ),
                max_size=4,
            )
        )
        body = orjson.dumps(data.draw(st.one_of(st.just(ops), hs.hostile_values)))
        headers = _json("application/json-patch+json")
    else:
        part = st.fixed_dictionaries(
            {
                "name": st.sampled_from(
                    ["type", "path", "name", "value", "index", "source", "destination", "x"]
                )
            },
            optional={
                "valueCode": hs.hostile_values,
                "valueString": hs.hostile_values,
                "valueInteger": hs.hostile_values,
                "valueBoolean": hs.hostile_values,
            },
        )
        operation = st.fixed_dictionaries(
            {"name": st.sampled_from(["operation", "op", ""]), "part": st.lists(part, max_size=5)}
        )
        params = {"resourceType": "Parameters", "parameter": data.draw(st.lists(operation, max_size=3))}
        body = orjson.dumps(data.draw(st.one_of(st.just(params), hs.mutated(params))))
        headers = _json()
    if data.draw(st.booleans()):
        headers["If-Match"] = data.draw(hs.etags)
    target_id = data.draw(st.one_of(st.just("fuzz-child"), hs.ids))
    await target.send(
        "PATCH", f"Patient/{target_id}", content=body, headers=headers, caller=data.draw(callers)
    )


_BUNDLE_URLS = st.one_of(
    st.sampled_from(
        [
            "Patient",
            "Patient/fuzz-child",
            "Patient/new-1",
            "Observation",
            "Patient?identifier=x",
            "Patient/fuzz-child/_history/1",
            "Patient/fuzz-child/_history",
            "Patient/$everything",
            "metadata",
            "",
            "/",
            "http://evil.example/fhir/Patient",
            "http://testserver/fhir/Patient/x",
            "Patient/a/b/c/d",
            "Unicorn/1",
            "_search?name=x",
            "Patient?_count=99999999999999999999",
        ]
    ),
    st.text(max_size=15),
)


@st.composite
def _entries(draw: st.DrawFn) -> dict[str, Any]:
    request: dict[str, Any] = {
        "method": draw(
            st.one_of(
                st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "get", "BOGUS"]),
                hs.hostile_values,
            )
        ),
        "url": draw(st.one_of(_BUNDLE_URLS, hs.hostile_values)),
    }
    for name in ("ifMatch", "ifNoneMatch", "ifNoneExist", "ifModifiedSince"):
        if draw(st.integers(0, 5)) == 0:
            request[name] = draw(st.one_of(hs.etags, hs.hostile_values))
    entry: dict[str, Any] = {"request": request}
    if draw(st.booleans()):
        entry["resource"] = draw(hs.mutated())
    if draw(st.booleans()):
        entry["fullUrl"] = draw(
            st.one_of(st.sampled_from(["urn:uuid:1", "urn:uuid:2", "Patient/1", ""]), hs.hostile_values)
        )
    if draw(st.integers(0, 6)) == 0:
        return draw(hs.mutated(entry))
    return entry


@FUZZ
@given(data=st.data())
async def test_transaction_and_batch(target: Target, data: st.DataObject) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": data.draw(st.sampled_from(["transaction", "batch", "collection", "searchset", "bogus"])),
        "entry": data.draw(st.lists(_entries(), max_size=5)),
    }
    if data.draw(st.integers(0, 4)) == 0:
        bundle = data.draw(hs.mutated(bundle))
    body = orjson.dumps(bundle)
    if data.draw(st.integers(0, 5)) == 0:
        body = data.draw(st.sampled_from(hs._BYTE_EDITS))(body)
    headers = _json()
    if data.draw(st.booleans()):
        headers["Prefer"] = data.draw(hs.prefers)
    await target.send(
        "POST",
        data.draw(st.sampled_from(["", "Bundle"])),
        content=body,
        headers=headers,
        caller=data.draw(callers),
    )


@FUZZ
@given(data=st.data())
async def test_search(target: Target, data: st.DataObject) -> None:
    query = data.draw(hs.query_strings())
    shape = data.draw(st.sampled_from(["type", "system", "post", "compartment", "type-search"]))
    rtype = data.draw(
        st.one_of(
            st.sampled_from(["Patient", "Observation", "Consent", "Task", "ServiceRequest"]), resource_types
        )
    )
    caller = data.draw(callers)
    if shape == "type":
        await target.send("GET", f"{rtype}?{query}", caller=caller)
    elif shape == "system":
        await target.send("GET", f"?{query}", caller=caller)
    elif shape == "type-search":
        await target.send("GET", f"{rtype}/_search?{query}", caller=caller)
    elif shape == "compartment":
        await target.send("GET", f"Patient/{data.draw(hs.ids)}/{rtype}?{query}", caller=caller)
    else:
        content_type = data.draw(st.one_of(st.just("application/x-www-form-urlencoded"), hs.content_types))
        form = query.encode() + data.draw(st.sampled_from([b"", b"&name=\xff\xfe", b"\xc3\x28", b"&%"]))
        await target.send(
            "POST", f"{rtype}/_search", content=form, headers=_json(content_type), caller=caller
        )


@FUZZ
@given(data=st.data())
async def test_read_vread_and_history(target: Target, data: st.DataObject) -> None:
    rtype = data.draw(st.one_of(st.just("Patient"), resource_types))
    id_ = data.draw(st.one_of(st.just("fuzz-child"), hs.ids))
    method = data.draw(st.sampled_from(["GET", "GET", "HEAD"]))
    shape = data.draw(st.sampled_from(["read", "vread", "history", "type-history", "system-history"]))
    query = data.draw(hs.query_strings())
    url = {
        "read": f"{rtype}/{id_}",
        "vread": f"{rtype}/{id_}/_history/{data.draw(hs.versions)}",
        "history": f"{rtype}/{id_}/_history",
        "type-history": f"{rtype}/_history",
        "system-history": "_history",
    }[shape]
    headers = {}
    if data.draw(st.booleans()):
        headers["If-None-Match"] = data.draw(hs.etags)
    await target.send(method, f"{url}?{query}", headers=headers, caller=data.draw(callers))


_OPERATION_URLS = sorted(
    {f"{t}/$" + op.name for op in OPERATIONS for t in op.resource_types if op.type_level}
    | {f"{t}/fuzz-child/$" + op.name for op in OPERATIONS for t in op.resource_types if op.instance_level}
    | {"$" + op.name for op in OPERATIONS if op.system}
    | {"ValueSet/administrative-gender/$expand", "CodeSystem/administrative-gender/$lookup", "$bogus"}
)
_OPERATION_PARAMETERS = st.fixed_dictionaries(
    {
        "name": st.one_of(
            st.sampled_from(
                [
                    "resource",
                    "mode",
                    "profile",
                    "url",
                    "valueSet",
                    "code",
                    "system",
                    "coding",
                    "codeableConcept",
                    "filter",
                    "count",
                    "offset",
                    "display",
                    "version",
                    "property",
                    "codeA",
                    "codeB",
                    "target",
                    "source",
                    "_since",
                    "_type",
                    "_count",
                    "start",
                    "end",
                    "job",
                    "type",
                    "wait",
                    "viewResource",
                    "patient",
                    "_format",
                    "resource",
                ]
            ),
            hs.hostile_values,
        )
    },
    optional={
        "valueString": hs.hostile_values,
        "valueCode": hs.hostile_values,
        "valueUri": hs.hostile_values,
        "valueInteger": hs.hostile_values,
        "valueBoolean": hs.hostile_values,
        "valueCoding": hs.hostile_values,
        "resource": st.one_of(hs.mutated(), hs.hostile_values),
        "part": hs.hostile_values,
    },
)


@FUZZ
@given(data=st.data())
async def test_operations(target: Target, data: st.DataObject) -> None:
    url = data.draw(st.sampled_from(_OPERATION_URLS))
    query = data.draw(hs.query_strings())
    caller = data.draw(callers)
    if data.draw(st.booleans()):
        await target.send("GET", f"{url}?{query}", caller=caller)
        return
    body: Any = {
        "resourceType": "Parameters",
        "parameter": data.draw(st.lists(_OPERATION_PARAMETERS, max_size=4)),
    }
    choice = data.draw(st.integers(0, 5))
    if choice == 0:
        body = data.draw(hs.mutated())  # a bare resource (e.g. for $validate)
    elif choice == 1:
        body = data.draw(hs.mutated(body))
    await target.send("POST", f"{url}?{query}", content=orjson.dumps(body), headers=_json(), caller=caller)


@FUZZ
@given(data=st.data())
async def test_headers_and_paths(target: Target, data: st.DataObject) -> None:
    headers: dict[str, str] = {}
    for name, values in (
        ("Accept", hs.accepts),
        ("Prefer", hs.prefers),
        ("X-Purpose-Of-Use", hs.purposes),
        ("If-Match", hs.etags),
        ("If-None-Match", hs.etags),
        ("Content-Type", hs.content_types),
        ("X-Emergency-Reason", st.text(max_size=20)),
    ):
        if data.draw(st.integers(0, 3)) == 0:
            headers[name] = data.draw(values)
    if target.auth and data.draw(st.integers(0, 3)) == 0:
        token = data.draw(
            st.one_of(
                st.sampled_from(["", "x", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "Bearer"]),
                st.text(alphabet="abcXYZ019-_.=", max_size=60),
            )
        )
        headers["Authorization"] = data.draw(st.sampled_from([f"Bearer {token}", token, f"Basic {token}"]))
    segments = data.draw(
        st.lists(
            st.one_of(
                hs.ids,
                resource_types,
                st.sampled_from(
                    ["_history", "_search", "$validate", "$everything", "metadata", "1", "*", "$"]
                ),
            ),
            max_size=5,
        )
    )
    path = "/".join(segments)
    method = data.draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]))
    body = data.draw(hs.body_bytes()) if method in ("POST", "PUT", "PATCH") else None
    fmt = data.draw(
        st.one_of(
            st.none(),
            st.sampled_from(
                ["json", "xml", "application/fhir+json", "csv", "%zz", "", "ndjson", "parquet", "text/html"]
            ),
        )
    )
    query = data.draw(hs.query_strings()) + (f"&_format={fmt}" if fmt is not None else "")
    await target.send(method, f"{path}?{query}", content=body, headers=headers, caller=data.draw(callers))


@FUZZ
@given(data=st.data())
async def test_token_endpoint(target: Target, data: st.DataObject) -> None:
    if not target.auth:
        return  # the endpoint exists with auth on only
    fields = {
        "grant_type": st.sampled_from(["client_credentials", "password", "", "authorization_code"]),
        "client_assertion_type": st.sampled_from(
            ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "", "x"]
        ),
        "client_assertion": st.one_of(
            st.sampled_from(["", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "e30.e30.e30", "...", "a" * 5000]),
            st.builds(
                lambda h, p: (
                    ".".join(base64.urlsafe_b64encode(orjson.dumps(x)).decode().rstrip("=") for x in (h, p))
                    + ".c2ln"
                ),
                hs.json_values,
                hs.json_values,
            ),
        ),
        "scope": st.one_of(
            st.sampled_from(["system/*.rs", "system/Patient.read", "", "user/*.*", "system/*.cruds"]),
            st.text(max_size=30),
        ),
        "client_id": st.text(max_size=20),
    }
    form = {k: data.draw(v) for k, v in fields.items() if data.draw(st.integers(0, 4))}
    encoded = (
        httpx.QueryParams(form).encode()
        if hasattr(httpx.QueryParams, "encode")
        else str(httpx.QueryParams(form))
    )
    content_type = data.draw(st.one_of(st.just("application/x-www-form-urlencoded"), hs.content_types))
    body = encoded.encode() if data.draw(st.integers(0, 5)) else data.draw(hs.body_bytes())
    await target.send(
        "POST",
        f"{ORIGIN}/auth/token",
        content=body,
        headers={"Content-Type": content_type},
        fhir=False,
        caller="none",
    )
