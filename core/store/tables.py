"""The five results tables: their fixed Arrow schemas and the checks every row passes.

metrics, ranks, losses, similarity and timings each have one pyarrow schema,
so segments written at different times union cleanly. `rows_to_table` and `columns_to_table` turn
rows into an Arrow table of exactly that schema: an unknown column or a value of the wrong type is
a ValueError naming the table and the column, a missing column is null.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

_S, _I64, _I32, _F64 = pa.string(), pa.int64(), pa.int32(), pa.float64()
SCHEMAS: dict[str, pa.Schema] = {
    "metrics": pa.schema([("run_id", _S), ("step", _I64), ("split", _S), ("protocol", _S),
                          ("model", _S), ("layer", _I32), ("metric", _S), ("value", _F64)]),
    "ranks": pa.schema([("run_id", _S), ("step", _I64), ("split", _S), ("protocol", _S),
                        ("model", _S), ("layer", _I32), ("user_id", _I64), ("rank", _I64)]),
    "losses": pa.schema([("run_id", _S), ("step", _I64), ("epoch", _F64), ("name", _S),
                         ("value", _F64)]),
    "similarity": pa.schema([("run_id", _S), ("measure", _S), ("a_model", _S), ("a_layer", _I32),
                             ("b_model", _S), ("b_layer", _I32), ("value", _F64), ("n", _I64)]),
    "timings": pa.schema([("run_id", _S), ("phase", _S), ("samples", _I64), ("seconds", _F64),
                          ("samples_per_s", _F64), ("peak_mem_mb", _F64), ("device", _S)]),
}
STEP_TABLES = tuple(name for name, schema in SCHEMAS.items() if "step" in schema.names)


def table_schema(table: str) -> pa.Schema:
    if table not in SCHEMAS:
        raise ValueError(f"unknown events table {table!r}; expected one of {', '.join(SCHEMAS)}")
    return SCHEMAS[table]


def rows_to_table(table: str, rows: Sequence[Mapping[str, Any]], run_id: str | None = None) -> pa.Table:
    """Check `rows` (dicts) against the table's schema and return them as an Arrow table."""
    schema = table_schema(table)
    keys: set[str] = set()
    for row in rows:
        keys.update(row)
    _check_names(table, schema, keys)
    columns = {name: [row.get(name) for row in rows] for name in schema.names if name in keys}
    return columns_to_table(table, columns, run_id, num_rows=len(rows))


def columns_to_table(table: str, columns: Mapping[str, Any], run_id: str | None = None,
                     num_rows: int | None = None) -> pa.Table:
    """Check columns (lists or numpy arrays of equal length) and return them as an Arrow table.

    A missing column is null; a missing run_id is filled with `run_id`, and a given one must equal it.
    """
    schema = table_schema(table)
    _check_names(table, schema, set(columns))
    lengths = {name: len(values) for name, values in columns.items()}
    if num_rows is None:
        num_rows = next(iter(lengths.values()), 0)
    if any(n != num_rows for n in lengths.values()):
        raise ValueError(f"events table {table!r}: columns have different lengths {lengths}")
    arrays = []
    for field in schema:
        values = columns.get(field.name)
        if values is None:
            fill = run_id if field.name == "run_id" else None
            arrays.append(pa.array([fill] * num_rows, type=field.type))
            continue
        array = _to_array(table, field, values)
        if field.name == "run_id" and run_id is not None:
            array = array.fill_null(run_id)
            if set(array.unique().to_pylist()) - {run_id}:
                raise ValueError(f"events table {table!r}, column 'run_id': rows name another run than {run_id!r}")
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=schema)


def _check_names(table: str, schema: pa.Schema, names: set[str]) -> None:
    unknown = sorted(names - set(schema.names))
    if unknown:
        raise ValueError(f"events table {table!r}: unknown column(s) {', '.join(unknown)}; "
                         f"expected some of {', '.join(schema.names)}")


def _to_array(table: str, field: pa.Field, values: Any) -> pa.Array:
    """One column as an Arrow array of the field's type, refusing lossy conversions by name.

    pyarrow alone would truncate 1.5 to 1 in an int column and accept bools as numbers, so the
    Python types are checked first (one set of types per column: cheap even for a million rows).
    """
    where = f"events table {table!r}, column {field.name!r}"
    want = "integer" if pa.types.is_integer(field.type) else "float" if pa.types.is_floating(field.type) else "string"
    if isinstance(values, np.ndarray) and values.dtype.kind != "O":
        ok = {"integer": "iu", "float": "iuf", "string": "U"}[want]
        if values.dtype.kind not in ok:
            raise ValueError(f"{where}: expected {want} values, got a numpy array of {values.dtype}")
    else:
        for kind in {type(v) for v in values}:
            if kind is not type(None) and not _type_fits(kind, want):
                example = next(v for v in values if type(v) is kind)
                raise ValueError(f"{where}: expected {want} values, got {kind.__name__} {example!r}")
    try:
        return pa.array(values, type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as err:
        raise ValueError(f"{where}: {err}") from err


def _type_fits(kind: type, want: str) -> bool:
    if issubclass(kind, (bool, np.bool_)):
        return False
    if want == "string":
        return issubclass(kind, str)
    if want == "integer":
        return issubclass(kind, numbers.Integral)
    return issubclass(kind, numbers.Real)
