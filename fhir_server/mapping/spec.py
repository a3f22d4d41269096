"""Loading a format folder (``formats/<format>/``): its mapping spec and the JSON Schema of one record."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson

# Shipped inside the package (found from an installed wheel too); TERMTEM_MAPPINGS_DIR overrides it.
MAPPINGS_DIR = Path(__file__).resolve().parent / "formats"
_READER_KINDS = {"tables", "sheet", "json"}


class SpecError(Exception):
    """A mapping spec or schema that is broken: a programming error in ``formats/``, not bad input."""


@dataclass
class SourceSpec:
    """How one table (or the only record kind) of a format is read, checked and mapped."""

    table: str
    schema: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    index: dict[str, Any] | None = None
    # Keys of accepted records that later tables need: a list (under this table's name) or
    # {name: key columns} (a LABOR row also provides a PREGNANCY).
    provides: list[str] | dict[str, list[str]] | None = None
    requires: dict[str, Any] | list[dict[str, Any]] | None = None
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def maps_records(self) -> bool:
        return bool(self.resources)


@dataclass
class FormatSpec:
    name: str
    folder: Path
    title: str
    reader: dict[str, Any]
    sources: list[SourceSpec]
    code_maps: dict[str, dict[str, Any]]
    schema: dict[str, Any]
    _validators: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return str(self.reader["kind"])

    def source(self, table: str) -> SourceSpec | None:
        return next((s for s in self.sources if s.table == table), None)

    def validator_for(self, source: SourceSpec) -> Any:
        """The JSON Schema validator for one record of ``source`` (its ``$defs`` entry, or the whole)."""
        definition = source.schema or ""
        found = self._validators.get(definition)
        if found is None:
            schema = self.schema
            if definition:
                schema = {**schema, "$ref": f"#/$defs/{definition}"}
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            found = cls(schema, format_checker=cls.FORMAT_CHECKER)
            self._validators[definition] = found
        return found


def mappings_dir() -> Path:
    """Where format folders live (``TERMTEM_MAPPINGS_DIR`` overrides the shipped ``formats/``)."""
    override = os.environ.get("TERMTEM_MAPPINGS_DIR")
    return Path(override) if override else MAPPINGS_DIR


def available_formats() -> list[str]:
    """Names of the formats that have a mapping spec."""
    folder = mappings_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "mapping.json").is_file())


@cache
def _load(folder: Path) -> FormatSpec:
    try:
        raw = orjson.loads((folder / "mapping.json").read_bytes())
        schema = orjson.loads((folder / "schema.json").read_bytes())
    except FileNotFoundError as exc:
        raise SpecError(f"{folder} needs mapping.json and schema.json") from exc
    except orjson.JSONDecodeError as exc:
        raise SpecError(f"{folder}: {exc}") from exc
    reader = raw.get("reader") or {}
    if reader.get("kind") not in _READER_KINDS:
        raise SpecError(f"{folder}/mapping.json: reader.kind must be one of {sorted(_READER_KINDS)}")
    sources = []
    for item in raw.get("sources", []):
        unknown = set(item) - set(SourceSpec.__dataclass_fields__) - {"comment"}
        if unknown:
            where = f"{folder}/mapping.json source {item.get('table')}"
            raise SpecError(f"{where}: unknown keys {sorted(unknown)}")
        sources.append(SourceSpec(**{k: v for k, v in item.items() if k != "comment"}))
    if not any(s.maps_records for s in sources):
        raise SpecError(f"{folder}/mapping.json maps no records")
    for source in sources:
        if source.schema and source.schema not in schema.get("$defs", {}):
            raise SpecError(f"{folder}/schema.json has no $defs/{source.schema}")
    spec = FormatSpec(
        name=raw.get("format", folder.name),
        folder=folder,
        title=raw.get("title", folder.name),
        reader=reader,
        sources=sources,
        code_maps=raw.get("codeMaps", {}),
        schema=schema,
    )
    return spec


def load_format(name: str) -> FormatSpec:
    """The spec of format ``name``; raises SpecError when it does not exist or is broken."""
    folder = mappings_dir() / name
    if not (folder / "mapping.json").is_file():
        raise SpecError(f"unknown format {name!r}; known: {', '.join(available_formats()) or 'none'}")
    return _load(folder.resolve())
