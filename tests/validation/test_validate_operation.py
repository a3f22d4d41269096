"""The $validate operation handler."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fhir_server.interactions.errors import FhirError
from fhir_server.operations.registry import OperationRequest, find
from fhir_server.operations.table import OPERATIONS
from fhir_server.operations.validate import validate_operation
from tests.validation.conftest import load_example


def _request(level="type", params=None, body=None, id_=None, store=None):
    ctx = SimpleNamespace(store=store)
    return OperationRequest(
        "validate",
        level,
        "Patient",
        id_,
        "POST",
        params or {"resourceType": "Parameters"},
        ctx,
        body_resource=body,
    )  # type: ignore[arg-type]


def test_registered_at_type_and_instance_level():
    assert find(OPERATIONS, "validate", "type", "Patient") is not None
    assert find(OPERATIONS, "validate", "instance", "Observation") is not None


async def test_body_resource_all_ok():
    result = await validate_operation(
        _request(
            body=load_example("Patient-th-child-example")
            | {"text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}}
        )
    )
    assert result.status == 200
    assert result.body["issue"] == [
        {"severity": "information", "code": "informational", "diagnostics": "All OK"}
    ]


async def test_invalid_resource_in_parameters_gives_200_with_issues():
    patient = load_example("Patient-th-child-example")
    del patient["gender"]
    params = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient}]}
    result = await validate_operation(_request(params=params))
    assert result.status == 200
    assert any(i["expression"] == ["Patient.gender"] for i in result.body["issue"])


async def test_profile_parameter_applies_a_profile():
    patient = {"resourceType": "Patient", "birthDate": "2020-01-01"}
    from fhir_server import canonical

    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": patient},
            {"name": "profile", "valueUri": canonical.structure_definition(canonical.PROFILE_CHILD_PATIENT)},
        ],
    }
    result = await validate_operation(_request(params=params))
    assert any(i["expression"] == ["Patient.gender"] for i in result.body["issue"])


async def test_bad_mode_and_missing_resource():
    with pytest.raises(FhirError) as err:
        await validate_operation(
            _request(
                params={
                    "resourceType": "Parameters",
                    "parameter": [{"name": "mode", "valueCode": "explode"}],
                },
                body={"resourceType": "Patient"},
            )
        )
    assert err.value.status == 400
    with pytest.raises(FhirError) as err:
        await validate_operation(_request())
    assert err.value.status == 400


async def test_delete_mode_checks_existence():
    class Store:
        async def read(self, rtype, id_):
            return None

    with pytest.raises(FhirError) as err:
        await validate_operation(
            _request(
                level="instance",
                id_="x",
                store=Store(),
                params={"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]},
            )
        )
    assert err.value.status == 404


async def test_type_mismatch():
    result = await validate_operation(
        _request(body={"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    )
    assert any(i["expression"] == ["resourceType"] for i in result.body["issue"])
