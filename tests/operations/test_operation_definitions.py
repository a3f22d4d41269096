"""Every operation in /metadata has its OperationDefinition readable and searchable (auth on)."""

from __future__ import annotations

from pathlib import Path

import orjson

from fhir_server.operations import published
from fhir_server.operations.table import OPERATIONS
from fhir_server.validation.validator import validate
from tests.conftest import make_settings, running_app
from tests.security.conftest import World


def test_every_table_entry_names_a_definition_that_resolves() -> None:
    for op in OPERATIONS:
        assert op.definition, f"${op.name} names no OperationDefinition"
        found = published.definition_for(op.definition)
        assert found is not None, f"${op.name}: no OperationDefinition {op.definition}"
        # an alias (SQL on FHIR's $run) shares the definition of the operation it stands for
        assert found["code"] in {o.name for o in OPERATIONS if o.definition == op.definition}


def test_our_definition_files_are_valid_and_used() -> None:
    named = set(published.definition_urls())
    for path in sorted(published.FOLDER.glob("*.json")):
        resource = orjson.loads(path.read_bytes())
        assert path.name == f"OperationDefinition-{resource['id']}.json"
        errors = [i for i in validate(resource) if i.get("severity") in ("error", "fatal")]
        assert not errors, (path.name, errors)
        assert resource["url"] in named, f"{path.name} is not named by any operation in the table"


async def test_metadata_operations_are_readable_and_searchable(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path, auth=True, data_dir=tmp_path / "data")) as (app, http):
        reader = await World(app, http, tmp_path).caller("tester", "Organization/lab", "hospital")
        assert (await reader.get("OperationDefinition/Patient-everything")).status_code == 200
        metadata = (await http.get("metadata")).json()
        rest = metadata["rest"][0]
        urls = {op["definition"] for op in rest["operation"]}
        for resource in rest["resource"]:
            urls |= {op["definition"] for op in resource.get("operation", [])}
        assert "http://hl7.org/fhir/OperationDefinition/Resource-validate" in urls
        for url in sorted(urls):
            found = await reader.get(f"OperationDefinition?url={url}")
            assert found.status_code == 200, found.text
            entries = [e for e in found.json().get("entry", []) if e["search"]["mode"] == "match"]
            assert len(entries) == 1, url
            definition = entries[0]["resource"]
            read = await reader.get(f"OperationDefinition/{definition['id']}")
            assert read.status_code == 200 and read.json()["url"] == url
        by_code = (await reader.get("OperationDefinition?code=reindex")).json()
        assert [e["resource"]["id"] for e in by_code["entry"]] == ["reindex"]
