"""Snapshot generation from our differentials."""

from __future__ import annotations

import json
import subprocess
import sys

from fhir_server import canonical
from fhir_server.validation.snapshot import generate_snapshot
from tests.validation.conftest import ROOT


def _source(id_: str) -> dict:
    return json.loads((ROOT / "profiles" / f"StructureDefinition-{id_}.json").read_text(encoding="utf-8"))


def test_child_patient_cid_slice():
    sd = generate_snapshot(_source(canonical.PROFILE_CHILD_PATIENT))
    by_id = {e["id"]: e for e in sd["snapshot"]["element"]}
    cid = by_id["Patient.identifier:cid"]
    assert (cid["sliceName"], cid["min"], cid["max"]) == ("cid", 0, "1")
    assert by_id["Patient.identifier:cid.system"]["fixedUri"] == canonical.CID_SYSTEM
    assert by_id["Patient.identifier:cid.system"]["min"] == 1
    assert any(c["key"] == "th-cid-1" for c in cid["constraint"])
    assert by_id["Patient.identifier"]["slicing"]["discriminator"] == [{"type": "pattern", "path": "$this"}]
    # Identifier's own elements were expanded under the slice, in order, after the slice itself
    ids = [e["id"] for e in sd["snapshot"]["element"]]
    assert (
        ids.index("Patient.identifier:cid")
        < ids.index("Patient.identifier:cid.use")
        < ids.index("Patient.identifier:cid.value")
    )
    assert by_id["Patient.gender"]["min"] == 1 and by_id["Patient.birthDate"]["min"] == 1


def test_extension_slices_keep_their_profile():
    sd = generate_snapshot(_source(canonical.PROFILE_CHILD_PATIENT))
    by_id = {e["id"]: e for e in sd["snapshot"]["element"]}
    dopa = by_id["Patient.address.extension:dopaCode"]
    assert dopa["type"] == [
        {"code": "Extension", "profile": [canonical.structure_definition(canonical.EXT_DOPA_ADDRESS_CODE)]}
    ]


def test_complex_extension_sub_slices():
    sd = generate_snapshot(_source(canonical.EXT_DOPA_ADDRESS_CODE))
    by_id = {e["id"]: e for e in sd["snapshot"]["element"]}
    assert by_id["Extension.extension:province"]["min"] == 1
    assert by_id["Extension.extension:province.url"]["fixedUri"] == "province"
    assert by_id["Extension.value[x]"]["max"] == "0"
    assert by_id["Extension.extension"]["slicing"]["rules"] == "closed"


def test_generated_folder_is_up_to_date():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_snapshots.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout
