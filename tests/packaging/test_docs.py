"""The configuration reference names every environment variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_VARIABLE = re.compile(r"TERMTEM_[A-Z0-9_]*[A-Z0-9]")


def test_every_environment_variable_is_documented() -> None:
    used: set[str] = set()
    for path in (ROOT / "fhir_server").rglob("*.py"):
        used |= set(_VARIABLE.findall(path.read_text(encoding="utf-8")))
    documented = set(_VARIABLE.findall((ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")))
    missing = sorted(used - documented)
    assert not missing, f"add these to docs/configuration.md: {missing}"


def test_the_readme_links_the_operator_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/deployment.md" in readme and "docs/configuration.md" in readme
