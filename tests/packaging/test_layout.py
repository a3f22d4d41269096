"""Everything the server and the commands read at run time lives inside the package."""

from __future__ import annotations

from pathlib import Path

from fhir_server.mapping.spec import available_formats, mappings_dir
from fhir_server.terminology import terminology_dir

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fhir_server"


def test_formats_and_terminology_are_package_data() -> None:
    assert mappings_dir().resolve().is_relative_to(PACKAGE)
    assert terminology_dir().resolve().is_relative_to(PACKAGE)
    assert {"moph43", "bma-childcare-dspm", "bma-school-health", "msdhs-case"} <= set(available_formats())


def test_old_top_level_folders_hold_only_their_forwarding_note() -> None:
    # A format or terminology file added at the old place would be missing from every installed wheel.
    for name in ("mappings", "terminology"):
        folder = ROOT / name
        if folder.exists():
            assert sorted(p.name for p in folder.iterdir()) == ["README.md"], folder


def test_licence_and_version_are_declared() -> None:
    import fhir_server

    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")[:200]
    assert "version = { attr = \"fhir_server.__version__\" }" in (ROOT / "pyproject.toml").read_text()
    assert fhir_server.__version__.count(".") == 2
