"""A view's rows as a typed Arrow table, written as CSV, NDJSON, JSON or Parquet.

pyarrow builds the table (column types from the ViewDefinition) and writes CSV and Parquet; NDJSON and
JSON are one orjson call per row. Collections (``collection: true``) are Arrow lists; CSV cannot hold
lists, so there they are written as JSON arrays.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fhir_server.analytics.views.definition import BOOLEAN_TYPES, DECIMAL_TYPES, INTEGER_TYPES, View
from fhir_server.analytics.views.derived import Shape

# _format values (codes and media types) -> our format name and the media type we answer with.
FORMATS: dict[str, tuple[str, str]] = {
    "csv": ("csv", "text/csv; charset=utf-8"),
    "text/csv": ("csv", "text/csv; charset=utf-8"),
    "ndjson": ("ndjson", "application/x-ndjson"),
    "application/x-ndjson": ("ndjson", "application/x-ndjson"),
    "application/ndjson": ("ndjson", "application/x-ndjson"),
    "application/fhir+ndjson": ("ndjson", "application/x-ndjson"),
    "json": ("json", "application/json"),
    "application/json": ("json", "application/json"),
    "parquet": ("parquet", "application/vnd.apache.parquet"),
    "application/parquet": ("parquet", "application/vnd.apache.parquet"),
    "application/vnd.apache.parquet": ("parquet", "application/vnd.apache.parquet"),
}


def _arrow_type(fhir_type: str | None, collection: bool, sample: list[Any]) -> pa.DataType:
    if fhir_type in INTEGER_TYPES:
        base: pa.DataType = pa.int64()
    elif fhir_type in DECIMAL_TYPES:
        base = pa.float64()
    elif fhir_type in BOOLEAN_TYPES:
        base = pa.bool_()
    elif fhir_type is not None:
        base = pa.string()
    else:
        base = _inferred(sample, collection)
    return pa.list_(base) if collection else base


def _inferred(values: list[Any], collection: bool) -> pa.DataType:
    """Without a declared type: the narrowest type every value fits (string when they disagree)."""
    kinds = set()
    for value in values:
        for v in value if collection and isinstance(value, list) else [value]:
            if v is None:
                continue
            kinds.add(
                bool
                if isinstance(v, bool)
                else int
                if isinstance(v, int)
                else float
                if isinstance(v, float)
                else str
            )
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds and kinds <= {int, float}:
        return pa.float64()
    return pa.string()


def _coerce(values: list[Any], arrow_type: pa.DataType, collection: bool) -> list[Any]:
    if pa.types.is_string(arrow_type if not collection else arrow_type.value_type):

        def text(v: Any) -> Any:
            if v is None or isinstance(v, str):
                return v
            if isinstance(v, bool):
                return "true" if v else "false"
            return str(v)

        if collection:
            return [None if v is None else [text(x) for x in v] for v in values]
        return [text(v) for v in values]
    if pa.types.is_floating(arrow_type if not collection else arrow_type.value_type):
        if collection:
            return [None if v is None else [None if x is None else float(x) for x in v] for v in values]
        return [None if v is None else float(v) for v in values]
    return values


def _array(data: list[Any], arrow_type: pa.DataType, collection: bool) -> pa.Array:
    """The column as Arrow: straight from the values when they already fit (the common case: text
    columns of text, decimals of floats), else after coercing each value."""
    if not collection and (pa.types.is_string(arrow_type) or pa.types.is_floating(arrow_type)):
        try:
            return pa.array(data, type=arrow_type, from_pandas=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            pass
    return pa.array(_coerce(data, arrow_type, collection), type=arrow_type)


def to_table(view: View | Shape, rows: list[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in view.columns]
    arrays, fields = [], []
    for name, values in zip(view.columns, columns, strict=True):
        data = list(values)
        collection = view.collections.get(name, False)
        arrow_type = _arrow_type(view.types.get(name), collection, data)
        arrays.append(_array(data, arrow_type, collection))
        fields.append(pa.field(name, arrow_type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write(table: pa.Table, fmt: str, *, header: bool = True) -> bytes:
    """Serialise ``table`` as ``fmt`` (csv, ndjson, json or parquet)."""
    if fmt == "parquet":
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue()
    if fmt == "csv":
        flat = table
        for i, field in enumerate(table.schema):
            if pa.types.is_list(field.type):
                texts = [None if v is None else orjson.dumps(v).decode() for v in table.column(i).to_pylist()]
                flat = flat.set_column(i, field.name, pa.array(texts, type=pa.string()))
        sink = io.BytesIO()
        options = pa_csv.WriteOptions(include_header=header, quoting_style="needed")
        pa_csv.write_csv(flat, sink, write_options=options)
        return sink.getvalue()
    records = table.to_pylist()
    if fmt == "ndjson":
        return b"".join(orjson.dumps(r) + b"\n" for r in records)
    return orjson.dumps(records)
