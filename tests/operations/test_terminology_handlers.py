"""The terminology operation handlers called directly, as the router would (GET strings, POST types)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_server import canonical
from fhir_server.config import Settings
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.operations.registry import OperationRequest, find
from fhir_server.operations.table import OPERATIONS
from fhir_server.storage.base import StoredResource

ADMIN = canonical.code_system(canonical.CS_ADMIN_AREA)
DSPM_RESULT = canonical.code_system(canonical.CS_DSPM_RESULT)
SPECIALPP = canonical.code_system(canonical.CS_MOPH_SPECIALPP)


class _Store:
    """Just enough of the Store contract for instance-level reads."""

    def __init__(self, *resources: StoredResource) -> None:
        self._items = {(r.resource_type, r.id): r for r in resources}

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        return self._items.get((resource_type, id))


def _stored(resource: dict[str, Any], method: str = "PUT") -> StoredResource:
    body = b"" if method == "DELETE" else orjson.dumps(resource)
    return StoredResource(
        resource["resourceType"], resource["id"], 1, "2026-01-01T00:00:00.000Z", method, body
    )


def _get(params: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": k, "valueString": v} for k, v in params.items()],
    }


async def call(
    name: str,
    resource_type: str,
    parameters: dict[str, Any],
    id_: str | None = None,
    store: Any = None,
    method: str = "GET",
) -> dict[str, Any]:
    level = "instance" if id_ else "type"
    op = find(OPERATIONS, name, level, resource_type)
    assert op is not None, (name, level, resource_type)
    context = RequestContext(store=store, settings=Settings(), base_url="http://test/fhir")
    request = OperationRequest(
        name=name,
        level=level,
        resource_type=resource_type,
        id=id_,
        method=method,
        parameters=parameters,
        context=context,
    )
    result = await op.handler(request)
    assert result.status == 200
    return result.body


def value(body: dict[str, Any], name: str) -> Any:
    p = next(p for p in body["parameter"] if p["name"] == name)
    return next(v for k, v in p.items() if k.startswith("value"))


def test_table_registers_every_terminology_operation() -> None:
    for name, rt in (
        ("lookup", "CodeSystem"),
        ("validate-code", "CodeSystem"),
        ("validate-code", "ValueSet"),
        ("expand", "ValueSet"),
        ("translate", "ConceptMap"),
        ("subsumes", "CodeSystem"),
    ):
        for level in ("type", "instance"):
            assert find(OPERATIONS, name, level, rt) is not None


async def test_lookup_get_in_english() -> None:
    body = await call("lookup", "CodeSystem", _get({"system": ADMIN, "code": "10", "displayLanguage": "en"}))
    assert value(body, "display") == "Bangkok"


async def test_lookup_post_coding_thai() -> None:
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "coding", "valueCoding": {"system": DSPM_RESULT, "code": "delay"}}],
    }
    body = await call("lookup", "CodeSystem", params, method="POST")
    assert value(body, "display") == "ล่าช้า (ช้ากว่าปกติ)"


async def test_lookup_instance_falls_back_to_shipped_resource() -> None:
    body = await call("lookup", "CodeSystem", _get({"code": "school"}), id_=canonical.CS_AGENCY_TYPE)
    assert value(body, "display") == "โรงเรียน"


async def test_lookup_instance_unknown_code_is_404() -> None:
    with pytest.raises(FhirError) as err:
        await call("lookup", "CodeSystem", _get({"code": "nope"}), id_=canonical.CS_AGENCY_TYPE)
    assert err.value.status == 404


async def test_instance_reads_from_store_and_deleted_is_410() -> None:
    local = {
        "resourceType": "CodeSystem",
        "id": "local",
        "url": "http://example.org/cs/local",
        "status": "active",
        "content": "complete",
        "concept": [{"code": "a", "display": "A", "concept": [{"code": "b"}]}],
    }
    store = _Store(_stored(local), _stored({"resourceType": "CodeSystem", "id": "gone"}, "DELETE"))
    body = await call("subsumes", "CodeSystem", _get({"codeA": "a", "codeB": "b"}), id_="local", store=store)
    assert value(body, "outcome") == "subsumes"
    with pytest.raises(FhirError) as err:
        await call("lookup", "CodeSystem", _get({"code": "a"}), id_="gone", store=store)
    assert err.value.status == 410
    with pytest.raises(FhirError) as err:
        await call("lookup", "CodeSystem", _get({"code": "a"}), id_="never", store=store)
    assert err.value.status == 404


async def test_validate_code_value_set_get_and_code_system_post() -> None:
    body = await call(
        "validate-code",
        "ValueSet",
        _get(
            {
                "url": canonical.value_set(canonical.CS_MOPH_SEX),
                "code": "2",
                "system": canonical.code_system(canonical.CS_MOPH_SEX),
                "displayLanguage": "en",
            }
        ),
    )
    assert value(body, "result") is True and value(body, "display") == "Female"
    post = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "url", "valueUri": "http://hl7.org/fhir/administrative-gender"},
            {"name": "code", "valueCode": "unknown"},
        ],
    }
    body = await call("validate-code", "CodeSystem", post, method="POST")
    assert value(body, "result") is True
    body = await call("validate-code", "CodeSystem", _get({"code": "nope"}), id_=canonical.CS_DSPM_DOMAIN)
    assert value(body, "result") is False and "Unknown code" in value(body, "message")


async def test_validate_code_codeable_concept_post() -> None:
    post = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "url", "valueUri": canonical.value_set(canonical.VS_CONSENT_PURPOSE)},
            {
                "name": "codeableConcept",
                "valueCodeableConcept": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}
                    ]
                },
            },
        ],
    }
    body = await call("validate-code", "ValueSet", post, method="POST")
    assert value(body, "result") is True and value(body, "display") == "การรักษา"


async def test_expand_get_with_paging_and_thai_filter() -> None:
    body = await call(
        "expand",
        "ValueSet",
        _get(
            {
                "url": canonical.value_set(canonical.VS_ADMIN_AREA_DISTRICT),
                "filter": "เขต",
                "count": "5",
                "offset": "5",
                "includeDesignations": "true",
            }
        ),
    )
    assert body["expansion"]["total"] == 51  # Bangkok's 50 khet and Sanam Chai Khet (2408)
    assert len(body["expansion"]["contains"]) == 5
    assert body["expansion"]["contains"][0]["designation"]


async def test_expand_instance_and_post_value_set() -> None:
    body = await call("expand", "ValueSet", _get({"filter": "gross"}), id_=canonical.CS_DSPM_DOMAIN)
    assert [c["code"] for c in body["expansion"]["contains"]] == ["GM"]
    inline = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {
            "include": [
                {"system": ADMIN, "filter": [{"property": "concept", "op": "descendent-of", "value": "1001"}]}
            ]
        },
    }
    post = {"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": inline}]}
    body = await call("expand", "ValueSet", post, method="POST")
    assert body["expansion"]["total"] == 12  # the khwaeng of Phra Nakhon


async def test_expand_bad_count_is_400_with_expression() -> None:
    with pytest.raises(FhirError) as err:
        await call(
            "expand", "ValueSet", _get({"url": canonical.value_set(canonical.CS_MOPH_SEX), "count": "ten"})
        )
    assert err.value.status == 400
    assert err.value.expression == ["Parameters.parameter.where(name = 'count')"]


async def test_translate_get_reverse_and_instance() -> None:
    body = await call(
        "translate",
        "ConceptMap",
        _get({"system": SPECIALPP, "code": "1B262", "reverse": "true"}),
        id_=canonical.CM_DSPM_RESULT_TO_MOPH,
    )
    match = next(p for p in body["parameter"] if p["name"] == "match")
    concept = next(x["valueCoding"] for x in match["part"] if x["name"] == "concept")
    assert concept["code"] == "suspected-delay-refer"
    with pytest.raises(FhirError) as err:
        await call(
            "translate", "ConceptMap", _get({"system": SPECIALPP, "code": "1B262", "reverse": "maybe"})
        )
    assert err.value.status == 400


async def test_subsumes_get_and_codings_post() -> None:
    body = await call("subsumes", "CodeSystem", _get({"system": ADMIN, "codeA": "100101", "codeB": "10"}))
    assert value(body, "outcome") == "subsumed-by"
    post = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "codingA", "valueCoding": {"system": ADMIN, "code": "10"}},
            {"name": "codingB", "valueCoding": {"system": ADMIN, "code": "1001"}},
        ],
    }
    assert value(await call("subsumes", "CodeSystem", post, method="POST"), "outcome") == "subsumes"
    mixed = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "codingA", "valueCoding": {"system": ADMIN, "code": "10"}},
            {"name": "codingB", "valueCoding": {"system": DSPM_RESULT, "code": "pass"}},
        ],
    }
    with pytest.raises(FhirError) as err:
        await call("subsumes", "CodeSystem", mixed, method="POST")
    assert err.value.status == 400
