"""The mapping engine: legacy files + a format's mapping spec → conditional FHIR transaction entries.

Everything format-specific lives in ``formats/<format>/mapping.json``; this module only knows the spec
language (see :mod:`fhir_server.mapping.template` and ``formats/README.md``). Each input record becomes
either a :class:`MappedRecord` (all its resources) or one :class:`RowError` per problem found, never both.
"""

from __future__ import annotations

import re
import uuid
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fhir_server.mapping import conceptmaps, readers
from fhir_server.mapping.model import MappedRecord, RowError
from fhir_server.mapping.readers import ReaderError, SourceRecord
from fhir_server.mapping.spec import FormatSpec, SourceSpec, SpecError, load_format
from fhir_server.mapping.template import Renderer, TemplateError, lookup_path
from fhir_server.mapping.values import RULES, ValueRuleError, ValueRuleWarning

# Namespace of the deterministic fullUrls: the same business identifier always gives the same urn:uuid.
_NAMESPACE = uuid.UUID("6f1c3b52-8d0e-5a7e-9b1f-2f0c6d7e8a90")

# A check of one record's entries (e.g. against the Thai profiles): (FHIRPath, message) per error found.
# It runs inside the engine so a rejected PERSON row also rejects the rows that depend on it.
RecordValidator = Callable[[list[dict[str, Any]]], Iterable[tuple[str, str]]]


class _RecordErrors(Exception):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def full_url(resource_type: str, system: str, value: str) -> str:
    """The ``urn:uuid`` standing for the resource keyed by this business identifier."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{resource_type}|{system}|{value}')}"


def identifier_query(system: str, value: str) -> str:
    """``identifier=system|value`` with the parts escaped for a URL query."""
    return f"identifier={quote(system, safe=':/')}|{quote(value, safe='')}"


class _Index:
    """Rows of a lookup table by key, kept as tuples to stay small on large exports."""

    def __init__(self, key: list[str], many: bool, columns: list[str] | None = None) -> None:
        self.key = key
        self.many = many
        self.columns = columns
        self.header: list[str] = []
        self.rows: dict[tuple[str, ...], list[tuple[tuple[str, ...], str]]] = {}

    def add(self, record: SourceRecord, data: dict[str, Any]) -> None:
        if not self.header:
            self.header = list(self.columns or data)
        values = tuple(str(data.get(h, "")) for h in self.header)
        where = f"{Path(record.file.split('!')[-1]).name} row {record.row}"
        key = tuple(str(data.get(k, "")).strip() for k in self.key)
        bucket = self.rows.setdefault(key, [])
        if self.many or not bucket:
            bucket.append((values, where))

    def find(self, key: tuple[str, ...]) -> list[dict[str, Any]]:
        found = []
        for values, where in self.rows.get(key, []):
            row: dict[str, Any] = dict(zip(self.header, values, strict=False))
            row["__where__"] = where
            found.append(row)
        return found


class Mapper:
    """Maps the records of one format. Keeps lookup indexes and the keys of accepted records."""

    def __init__(
        self, spec: FormatSpec, validate: RecordValidator | None = None, *, check_columns: bool = True
    ) -> None:
        """``check_columns=False`` skips the per-row JSON Schema check, for rows a program wrote and a
        test imports through the checking path (the synthetic generator): the entries are the same."""
        self.spec = spec
        self.validate = validate
        self.check_columns = check_columns
        self.indexes: dict[str, _Index] = {}
        self.accepted: dict[str, set[tuple[str, ...]]] = {}
        self._warnings: list[tuple[str, str]] = []  # of the record being mapped

    # --- reading -----------------------------------------------------------------------------------

    def _records(self, paths: list[Path]) -> Iterator[tuple[SourceSpec, SourceRecord] | RowError]:
        kind = self.spec.kind
        if kind == "tables":
            try:
                files = readers.find_table_files(paths)
            except ReaderError as exc:
                yield RowError(exc.file, 0, "", exc.reason)
                return
            delimiter = self.spec.reader.get("delimiter", "|")
            for source in self.spec.sources:  # spec order: lookups first, then PERSON, then the rest
                for table_file in (f for f in files if f.table == source.table):
                    for record in readers.read_delimited(table_file, delimiter):
                        yield source, record
            return
        source = next(s for s in self.spec.sources if s.maps_records)
        for path in paths:
            try:
                if kind == "sheet":
                    known = set(source.columns) | set(source.columns.values())
                    rows = readers.read_sheet(path, source.table, known)
                else:
                    rows = readers.read_json(path, source.table)
                for record in rows:
                    yield source, record
            except (ReaderError, OSError) as exc:
                reason = exc.reason if isinstance(exc, ReaderError) else str(exc)
                yield RowError(str(path), 0, "", reason, source.table)

    def map_files(self, paths: Iterable[Path | str]) -> Iterator[MappedRecord | RowError]:
        for item in self._records([Path(p) for p in paths]):
            if isinstance(item, RowError):
                yield item
                continue
            yield from self._dispatch(*item)

    def map_tables(self, tables: Mapping[str, list[dict[str, str]]]) -> Iterator[MappedRecord | RowError]:
        """Map rows already in memory (``{table: [row, ...]}``, each row ``{column: text}``) exactly as if
        they had been read from ``<TABLE>.txt`` files: same order (lookups first), same rules, same
        entries. The synthetic generator builds its perinatal FHIR this way, so it cannot drift from
        what an import of the same rows produces."""
        for source in self.spec.sources:
            for row, data in enumerate(tables.get(source.table, ()), start=2):
                record = SourceRecord(f"{source.table}.txt", row, source.table, data)
                yield from self._dispatch(source, record)

    def index_rows(self, table: str, rows: Iterable[dict[str, str]]) -> None:
        """Make rows of ``table`` available to lookups without mapping them."""
        rows = list(rows)
        for source in self.spec.sources:
            if source.table == table and source.index is not None and not source.maps_records:
                for row in rows:
                    self._add_to_index(source, SourceRecord(f"{table}.txt", 0, table, row))

    def accept(self, table: str, key: tuple[str, ...]) -> None:
        """Count a record as accepted (rows that need it are mapped) though it was not mapped here."""
        self.accepted.setdefault(table, set()).add(key)

    def _dispatch(self, source: SourceSpec, record: SourceRecord) -> Iterator[MappedRecord | RowError]:
        if source.index is not None and not source.maps_records:
            self._add_to_index(source, record)
            return
        if source.maps_records:
            yield from self.map_record(source, record)

    def _add_to_index(self, source: SourceSpec, record: SourceRecord) -> None:
        assert source.index is not None
        options = source.index
        name = str(options.get("name", source.table))  # a table can be indexed on several keys
        index = self.indexes.get(name)
        if index is None:
            index = _Index(list(options["key"]), bool(options.get("many")), options.get("columns"))
            self.indexes[name] = index
        index.add(record, self._rename(source, record.data))

    @staticmethod
    def _rename(source: SourceSpec, data: dict[str, Any]) -> dict[str, Any]:
        if not source.columns:
            return data
        return {source.columns.get(k, k): v for k, v in data.items()}

    # --- one record --------------------------------------------------------------------------------

    def map_record(self, source: SourceSpec, record: SourceRecord) -> Iterator[MappedRecord | RowError]:
        """The mapped entries of one record, or its errors (all of them, so the clerk fixes them at once)."""

        def error(field: str, reason: str) -> RowError:
            return RowError(record.file, record.row, field, reason, record.table)

        if record.problem:
            yield error("", record.problem)
            return
        data = self._rename(source, record.data)
        headers = {source.columns[k]: k for k in record.data if k in source.columns}
        requirements = source.requires if isinstance(source.requires, list) else [source.requires]
        missing = False
        for requirement in requirements if source.requires else []:
            table = requirement["table"]
            key = tuple(str(data.get(k, "")).strip() for k in requirement["key"])
            if key not in self.accepted.get(table, set()):
                names = "/".join(requirement["key"])
                what = requirement.get("what", f"{table} record")
                yield error(names, f"no accepted {what} for {names} {'/'.join(key)}")
                missing = True
        if missing:
            return
        schema_errors = list(self.spec.validator_for(source).iter_errors(data)) if self.check_columns else []
        if schema_errors:
            for found in sorted(schema_errors, key=lambda e: list(map(str, e.absolute_path))):
                field, reason = _schema_error(found)
                yield error(headers.get(field, field), reason)
            return
        self._warnings = []
        try:
            entries = self._entries(source, data, headers)
        except _RecordErrors as exc:
            for field, reason in exc.errors:
                yield error(field, reason)
            return
        provided = source.provides if isinstance(source.provides, dict) else {source.table: source.provides}
        for table, key_names in provided.items() if source.provides else []:
            key = tuple(str(data.get(k, "")).strip() for k in key_names)
            self.accepted.setdefault(table, set()).add(key)
        warnings = [
            RowError(record.file, record.row, field, reason, record.table, severity="warning")
            for field, reason in self._warnings
        ]
        yield MappedRecord(record.file, record.row, record.table, entries, warnings)

    def _entries(self, source: SourceSpec, data: dict[str, Any], headers: Mapping[str, str]
                 ) -> list[dict[str, Any]]:
        errors: list[tuple[str, str]] = []
        scope = self._fields(source.fields, data, {}, errors, headers, "")
        if errors:
            raise _RecordErrors(errors)
        refs: dict[str, str] = {}
        planned: list[
            tuple[dict[str, Any], Mapping[str, Any], MutableMapping[str, str], list[tuple[str, str]]]
        ] = []
        self._plan(source.resources, scope, refs, planned, errors, headers)
        if errors:
            raise _RecordErrors(errors)
        entries = []
        for spec_item, item_scope, item_refs, identities in planned:
            renderer = Renderer(item_refs, self._renderer_fields(errors, headers))
            try:
                entry = self._entry(spec_item, item_scope, renderer, identities)
            except TemplateError as exc:
                raise SpecError(f"{self.spec.name}: {exc}") from exc
            entries.append(entry)
        if self.validate is not None:
            errors.extend(self.validate(entries))
        if errors:
            raise _RecordErrors(errors)
        return entries

    def _renderer_fields(self, errors: list[tuple[str, str]], headers: Mapping[str, str]
                         ) -> Callable[[dict[str, Any], Mapping[str, Any], Mapping[str, Any]], Any]:
        def evaluate(specs: dict[str, Any], item: Mapping[str, Any], outer: Mapping[str, Any]) -> Any:
            item_data = item if isinstance(item, dict) else {"value": item}
            return self._fields(specs, item_data, outer, errors, headers, "")

        return evaluate

    def _plan(
        self,
        specs: list[dict[str, Any]],
        scope: Mapping[str, Any],
        refs: MutableMapping[str, str],
        planned: list[Any],
        errors: list[tuple[str, str]],
        headers: Mapping[str, str],
    ) -> None:
        for spec_item in specs:
            if not _when(spec_item.get("when"), scope):
                continue
            if "each" in spec_item:
                each = spec_item["each"]
                items = lookup_path(scope, each["in"]) or []
                for position, item in enumerate(items if isinstance(items, list) else [items]):
                    item_data = item if isinstance(item, dict) else {"value": item}
                    label = f"{each['in']}[{position}]."
                    item_fields = each.get("fields", {})
                    item_scope = self._fields(item_fields, item_data, scope, errors, headers, label)
                    if _when(each.get("when"), item_scope):
                        self._plan(spec_item["resources"], item_scope, ChainMap({}, refs), planned, errors,
                                   headers)
                continue
            identities = self._identities(spec_item, scope)
            if not identities:
                errors.append(("", f"no business identifier to key the {spec_item['resourceType']} on"))
                continue
            system, value = identities[0]
            url = full_url(spec_item["resourceType"], system, value)
            if "ref" in spec_item:
                refs[spec_item["ref"]] = url
            if "refAs" in spec_item:
                alias = Renderer({}, lambda s, i, o: {}).render(spec_item["refAs"], scope)
                if alias:
                    root = refs.maps[-1] if isinstance(refs, ChainMap) else refs
                    root[str(alias)] = url
            planned.append((spec_item, scope, refs, identities))

    def _identities(self, spec_item: dict[str, Any], scope: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The business identifiers present, in the spec's order (the first keys the fullUrl)."""
        renderer = Renderer({}, lambda s, i, o: {})
        found: list[tuple[str, str]] = []
        for candidate in spec_item["identity"]:
            try:
                system = renderer.render(candidate["system"], scope)
                value = renderer.render(candidate["value"], scope)
            except TemplateError as exc:
                raise SpecError(f"{self.spec.name}: {exc}") from exc
            if system and value not in (None, ""):
                found.append((str(system), str(value)))
        return found

    def _entry(self, spec_item: dict[str, Any], scope: Mapping[str, Any], renderer: Renderer,
               identities: list[tuple[str, str]]) -> dict[str, Any]:
        """One entry. With ``"match": "any"`` its condition is any of the identifiers present (a child
        first written under a temporary identifier is found again when its CID arrives), and the
        resource carries them all; otherwise the first."""
        system, value = identities[0]
        keys = identities if spec_item.get("match") == "any" else identities[:1]
        resource_type = spec_item["resourceType"]
        body = renderer.render(spec_item.get("body", {}), scope) or {}
        resource: dict[str, Any] = {"resourceType": resource_type}
        profile = renderer.render(spec_item.get("profile"), scope) if spec_item.get("profile") else None
        if profile:
            resource["meta"] = {"profile": [profile]}
        resource.update(body)
        identifiers = resource.setdefault("identifier", [])
        for key_system, key_value in keys:
            if not any(i.get("system") == key_system and i.get("value") == key_value for i in identifiers):
                identifiers.append({"system": key_system, "value": key_value})
        url = full_url(resource_type, system, value)
        query = identifier_query(system, value)
        if len(keys) > 1:
            query += "".join("," + identifier_query(s, v).removeprefix("identifier=") for s, v in keys[1:])
        if spec_item.get("method", "update") == "create":
            request = {"method": "POST", "url": resource_type, "ifNoneExist": query}
        else:
            request = {"method": "PUT", "url": f"{resource_type}?{query}"}
        return {"fullUrl": url, "resource": resource, "request": request}

    # --- fields ------------------------------------------------------------------------------------

    def _fields(
        self,
        specs: dict[str, dict[str, Any]],
        data: Mapping[str, Any],
        outer: Mapping[str, Any],
        errors: list[tuple[str, str]],
        headers: Mapping[str, str],
        label: str,
    ) -> dict[str, Any]:
        scope: ChainMap[str, Any] = ChainMap({}, dict(outer))
        for name, spec_field in specs.items():
            where = label + _field_label(spec_field, headers, name)
            try:
                scope[name] = self._field(spec_field, data, scope)
            except ValueRuleWarning as warning:
                scope[name] = warning.value
                self._warnings.append((where, warning.reason))
            except ValueRuleError as exc:
                reason = exc.reason
                if isinstance(data, dict) and data.get("__where__"):
                    reason += f" (in {data['__where__']})"
                errors.append((where, reason))
                scope[name] = None
        return dict(scope)

    def _field(self, spec_field: dict[str, Any], data: Mapping[str, Any], scope: Mapping[str, Any]) -> Any:
        if not _when(spec_field.get("when"), scope):
            return None
        rule = spec_field.get("rule")
        if "value" in spec_field:
            raw = spec_field["value"]
            rule = rule or "raw"
        elif "from" in spec_field:
            sources = spec_field["from"] if isinstance(spec_field["from"], list) else [spec_field["from"]]
            raw = next((v for v in (lookup_path(data, s) for s in sources) if v not in (None, "")), None)
        elif "join" in spec_field:
            parts = [lookup_path(data, s) for s in spec_field["join"]]
            raw = None if any(p in (None, "") for p in parts) else "".join(str(p).strip() for p in parts)
        elif "var" in spec_field:
            raw = lookup_path(scope, spec_field["var"])
            rule = rule or "raw"
        elif "vars" in spec_field:
            raw = [lookup_path(scope, v) for v in spec_field["vars"]]
            rule = rule or "raw"
        elif "lookup" in spec_field:
            index = self.indexes.get(spec_field["lookup"])
            key = tuple(str(lookup_path(data, k) or "").strip() for k in spec_field["on"])
            raw = index.find(key) if index else []
            rule = rule or "raw"
        elif "accepted" in spec_field:
            # True when a record of that kind was accepted for this key (a pregnancy, a person), else none.
            key = tuple(str(lookup_path(data, k) or "").strip() for k in spec_field["on"])
            raw = True if key in self.accepted.get(spec_field["accepted"], set()) else None
            rule = rule or "raw"
        else:
            raise SpecError(
                f"{self.spec.name}: a field needs value, from, join, var, vars, lookup or accepted"
            )
        try:
            value = RULES[rule or "text"](raw, spec_field.get("args", {}))
        except KeyError as exc:
            raise SpecError(f"{self.spec.name}: unknown rule {rule!r}") from exc
        if value is not None and "map" in spec_field:
            value = self._map(spec_field, value)
        if value is not None and "conceptMap" in spec_field:
            value = self._concept_map(spec_field["conceptMap"], value, scope)
        if value is None and "default" in spec_field:
            value = spec_field["default"]
        if value is None and spec_field.get("required"):
            raise ValueRuleError(spec_field.get("missing", "required value is missing"))
        return value

    def _map(self, spec_field: dict[str, Any], value: Any) -> Any:
        table = spec_field["map"]
        name = table if isinstance(table, str) else "allowed"
        if isinstance(table, str):
            if table not in self.spec.code_maps:
                raise SpecError(f"{self.spec.name}: no codeMaps entry {table!r}")
            table = self.spec.code_maps[table]
        lookup_key = value if isinstance(value, str) else str(value)
        if lookup_key in table:
            return self._constant(table[lookup_key])
        normalised = re.sub(r"\s+", "", lookup_key).lower()
        for candidate, mapped in table.items():
            if re.sub(r"\s+", "", candidate).lower() == normalised:
                return self._constant(mapped)
        unmapped = spec_field.get("unmapped", "error")
        if unmapped == "keep":
            return value
        if unmapped == "drop":
            return None
        raise ValueRuleError(f"{lookup_key!r} is not in the {name} code list")

    def _constant(self, mapped: Any) -> Any:
        """A code-map target; ``{@...}`` placeholders in it (code system URLs) are filled in."""
        if isinstance(mapped, (dict, list, str)):
            try:
                return Renderer({}, lambda s, i, o: {}).render(mapped, {})
            except TemplateError as exc:
                raise SpecError(f"{self.spec.name}: {exc}") from exc
        return mapped

    def _concept_map(self, options: dict[str, Any], value: Any, scope: Mapping[str, Any]) -> Any:
        renderer = Renderer({}, lambda s, i, o: {})
        url = renderer.render(options["url"], scope)
        source_system = renderer.render(options.get("source"), scope) if options.get("source") else None
        try:
            target = conceptmaps.translate(url, str(value), source_system)
        except KeyError as exc:
            raise SpecError(str(exc)) from exc
        if target is None:
            if options.get("unmapped") == "drop":
                return None
            raise ValueRuleError(f"{value!r} has no translation in {url.rsplit('/', 1)[-1]}")
        return target


def _when(test: str | None, scope: Mapping[str, Any]) -> bool:
    if not test:
        return True
    negate = test.startswith("!")
    value = lookup_path(scope, test.lstrip("!"))
    present = value not in (None, "", [], {}, False)
    return not present if negate else present


def _field_label(spec_field: dict[str, Any], headers: Mapping[str, str], name: str) -> str:
    if spec_field.get("label"):
        return str(spec_field["label"])
    source = spec_field.get("from") or spec_field.get("join")
    if isinstance(source, list):
        return "+".join(headers.get(s, s) for s in source) if "join" in spec_field else headers.get(
            source[0], source[0])
    if isinstance(source, str):
        return headers.get(source, source)
    return name


def _schema_error(found: Any) -> tuple[str, str]:
    path = ".".join(str(p) for p in found.absolute_path)
    if found.validator == "required":
        missing = [p for p in found.validator_value if p not in (found.instance or {})]
        field = ".".join(filter(None, [path, missing[0] if missing else ""]))
        return field, "required column is missing" if not path else "required value is missing"
    if found.validator == "minLength" and found.instance == "":
        return path, "required value is missing"
    return path, found.message


def map_files(
    format_name: str, paths: Iterable[Path | str], validate: RecordValidator | None = None
) -> Iterator[MappedRecord | RowError]:
    """Map every record in ``paths`` (files, folders or zips) with the spec of ``format_name``."""
    yield from Mapper(load_format(format_name), validate).map_files(paths)
