"""Readers: legacy files in, raw records out (one dict per row or JSON object, with file and row).

Three kinds, chosen by the mapping spec's ``reader.kind``:
- ``tables``: a MOPH 43-file style export: a folder, a zip or loose ``.txt`` files, each file one table
  named by its stem, pipe-delimited with a header row.
- ``sheet``: one table in CSV (any of the detected encodings) or XLSX; the header row is found among
  the first rows by the column names the spec knows, so title rows above it are skipped.
- ``json``: a JSON object, an array of objects, ``{"records": [...]}``, or NDJSON.
Tabular values come out as strings (spreadsheet numbers and dates are rendered as text) so one JSON
Schema and one set of value rules serve CSV and XLSX alike.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import orjson

from fhir_server.mapping.encoding import decode


class ReaderError(Exception):
    """A whole file that cannot be read (wrong type, no header row, broken zip)."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass
class SourceRecord:
    """One raw input record and where it came from (``row`` is the 1-based line or array position)."""

    file: str
    row: int
    table: str
    data: dict[str, Any]
    # Set when the row itself is malformed (wrong number of fields); the engine reports it.
    problem: str | None = None
    encoding: str | None = field(default=None, compare=False)


@dataclass
class TableFile:
    """One table's file inside an export: a display name and a way to get its bytes."""

    table: str
    name: str
    _path: Path | None = None
    _zip: Path | None = None
    _member: str | None = None

    def read_bytes(self) -> bytes:
        if self._zip is not None and self._member is not None:
            with zipfile.ZipFile(self._zip) as archive:
                return archive.read(self._member)
        assert self._path is not None
        return self._path.read_bytes()


def _table_name(filename: str) -> str:
    return Path(filename).stem.upper()


def find_table_files(paths: Iterable[Path]) -> list[TableFile]:
    """Every ``.txt`` table in the given folders, zips and files (zips may hold folders)."""
    found: list[TableFile] = []
    for path in paths:
        if not path.exists():
            raise ReaderError(str(path), "no such file or folder")
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() == ".txt":
                    found.append(TableFile(_table_name(child.name), str(child), _path=child))
                elif child.is_file() and child.suffix.lower() == ".zip":
                    found.extend(find_table_files([child]))
        elif path.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(path) as archive:
                    members = sorted(archive.namelist())
            except zipfile.BadZipFile as exc:
                raise ReaderError(str(path), "not a readable zip file") from exc
            for member in members:
                if member.lower().endswith(".txt"):
                    found.append(
                        TableFile(_table_name(member), f"{path}!{member}", _zip=path, _member=member)
                    )
        else:
            found.append(TableFile(_table_name(path.name), str(path), _path=path))
    return found


def read_delimited(table: TableFile, delimiter: str = "|") -> Iterator[SourceRecord]:
    """Rows of one pipe-delimited table file with a header row (fields unquoted, as HDC writes them)."""
    text, encoding = decode(table.read_bytes())
    lines = text.splitlines()
    if not lines:
        return
    header = [h.strip().upper() for h in lines[0].split(delimiter)]
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        values = line.split(delimiter)
        problem = None
        if len(values) != len(header):
            # A trailing delimiter is common and harmless; anything else is a broken row.
            if len(values) == len(header) + 1 and values[-1].strip() == "":
                values = values[:-1]
            else:
                problem = f"row has {len(values)} fields, the header has {len(header)}"
        data = dict(zip(header, (v.strip() for v in values), strict=False))
        yield SourceRecord(table.name, number, table.table, data, problem, encoding)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.time() == time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _normalise_header(value: Any) -> str:
    return " ".join(_cell_text(value).replace("\ufeff", "").split())


def _rows_to_records(
    rows: Iterator[list[Any]], file: str, table: str, known: set[str], encoding: str | None
) -> Iterator[SourceRecord]:
    header: list[str] | None = None
    for number, row in enumerate(rows, start=1):
        if header is None:
            candidate = [_normalise_header(c) for c in row]
            if number > 20:
                break
            hits = sum(1 for c in candidate if c in known)
            if hits >= min(2, len(known)):
                header = candidate
            continue
        cells = [_cell_text(c) for c in row]
        if not any(cells):
            continue
        problem = None
        if len(cells) > len(header) and any(cells[len(header):]):
            problem = f"row has {len(cells)} cells, the header has {len(header)}"
        data = {h: v for h, v in zip(header, cells, strict=False) if h}
        yield SourceRecord(file, number, table, data, problem, encoding)
    if header is None:
        raise ReaderError(file, "no header row with the expected column names in the first 20 rows")


def read_sheet(path: Path, table: str, known_headers: set[str]) -> Iterator[SourceRecord]:
    """Rows of a CSV or XLSX sheet whose header row holds some of ``known_headers``."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        import openpyxl

        try:
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many types for a broken file
            raise ReaderError(str(path), f"not a readable XLSX workbook ({exc.__class__.__name__})") from exc
        try:
            sheet = book.worksheets[0]
            yield from _rows_to_records(
                (list(r) for r in sheet.iter_rows(values_only=True)), str(path), table, known_headers, None
            )
        finally:
            book.close()
        return
    if suffix in (".csv", ".txt", ".tsv"):
        text, encoding = decode(path.read_bytes())
        sample = text[:4096]
        delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        yield from _rows_to_records(reader, str(path), table, known_headers, encoding)
        return
    raise ReaderError(str(path), f"unsupported sheet type {suffix or '(none)'}: use .csv or .xlsx")


def read_json(path: Path, table: str) -> Iterator[SourceRecord]:
    """JSON records: an object, an array, ``{"records": [...]}``, or NDJSON (``.ndjson``/``.jsonl``)."""
    text, encoding = decode(path.read_bytes())
    text = text.lstrip("\ufeff")
    if path.suffix.lower() in (".ndjson", ".jsonl"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield SourceRecord(str(path), number, table, {}, f"not valid JSON: {exc}", encoding)
                continue
            yield _json_record(item, str(path), number, table, encoding)
        return
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ReaderError(str(path), f"not valid JSON: {exc}") from exc
    if isinstance(document, dict) and isinstance(document.get("records"), list):
        document = document["records"]
    items = document if isinstance(document, list) else [document]
    for number, item in enumerate(items, start=1):
        yield _json_record(item, str(path), number, table, encoding)


def _json_record(item: Any, file: str, number: int, table: str, encoding: str) -> SourceRecord:
    if not isinstance(item, dict):
        return SourceRecord(file, number, table, {}, "record is not a JSON object", encoding)
    return SourceRecord(file, number, table, item, None, encoding)
