"""Compact embedding outputs: uint8 (the reference Luxical's uniform scalar
quantisation), int8 (symmetric) and binary (packed sign bits, like sentence-transformers'
``ubinary``), with their inverses.

8-bit codes need their scale (clipping limit) to be read back. Outputs record it where the
container can carry it, under the key ``luxical`` (:data:`METADATA_KEY`), so that
:func:`dequantize` needs no arguments:

- ``luxical embed`` and Arrow outputs (Ray Data blocks): field metadata of the embedding
  column, JSON ``{"precision": "int8", "scale": 0.6, "dim": 383}``; files also carry
  ``{"format": 1, "columns": {"embedding": {...}}, ...}`` in the Parquet schema metadata.
- Spark: the column's ``StructField`` metadata, ``{"luxical": {"precision": ...}}``, which
  ``df.write.parquet`` stores in the file's Spark schema
  (``org.apache.spark.sql.parquet.row.metadata``).
- Dask and Polars frames have no column metadata: the file-level record comes from
  ``to_parquet(custom_metadata=...)`` / ``write_parquet(metadata=...)`` with
  :func:`parquet_metadata` (or ``luxical.dask.parquet_metadata`` /
  ``luxical.polars.parquet_metadata``)."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Literal

import numpy as np

__all__ = [
    "INT8_SCALE",
    "METADATA_KEY",
    "UINT8_SCALE",
    "column_metadata",
    "default_scale",
    "dequantize",
    "parquet_metadata",
    "quantize",
    "resolve_scale",
    "stored_quantization",
]

Precision = Literal["uint8", "int8", "binary"]

#: The default int8 scale (clipping limit) of ``luxical embed --quantize int8`` and of the
#: Spark, Dask, Ray and Polars integrations (``quantize="int8"``). On the default model's
#: embeddings of the repository's real-text sample (bench/int8_scale.py; table in
#: bench/README.md) it clips 0.00002% of the values and gives the best lowest row cosine of
#: dequantised to float rows, 0.99958, of the 0.05-step scales that clip at most 0.001%
#: (0.9998 is out of int8's reach for this model). :func:`quantize` and :func:`dequantize`
#: of bare codes keep their own default (0.5) for compatibility.
INT8_SCALE = 0.6

#: The default uint8 scale everywhere: the reference Luxical's 0.5.
UINT8_SCALE = 0.5

#: Parquet schema / Arrow field / Spark column metadata key of luxical's record.
METADATA_KEY = b"luxical"
_METADATA_FORMAT = 1
#: Where Spark's Parquet writer stores the DataFrame schema, StructField metadata included.
_SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"


def default_scale(precision: str | None) -> float | None:
    """The scale the engines and the CLI use when none is given: :data:`INT8_SCALE` for
    ``"int8"``, :data:`UINT8_SCALE` for ``"uint8"``, None otherwise (binary and float
    outputs have no scale)."""
    return {"int8": INT8_SCALE, "uint8": UINT8_SCALE}.get(precision or "")


def resolve_scale(precision: str | None, scale: float | None) -> float | None:
    """`scale`, or the default of `precision` when None (see :func:`default_scale`).

    Raises:
        ValueError: `scale` is given for a precision without one (None, ``"binary"``), or
            is not a finite number > 0.
    """
    if scale is None:
        return default_scale(precision)
    if precision not in ("int8", "uint8"):
        raise ValueError(f'scale={scale!r} applies to quantize="int8" or "uint8" only, not quantize={precision!r}')
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
        raise ValueError(f"scale must be a number > 0, got {scale!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0 (values beyond ±scale saturate), got {scale!r}")
    return float(scale)


def _scale_argument(scale: float | None, limit: float | None) -> float | None:
    """`scale`, or its older name `limit`; both given must agree."""
    if limit is None:
        return scale
    if scale is not None and scale != limit:
        raise ValueError(f"scale={scale} and limit={limit} disagree; limit is the older name of scale, pass one")
    return limit


def quantize(
    emb: np.ndarray, precision: Precision = "uint8", *, scale: float | None = None, limit: float | None = None
) -> np.ndarray:
    """Quantises float embeddings (rows of unit norm, so |values| <= 1).

    Args:
        emb: float array (n, dim).
        precision: ``"uint8"``: ``round(clip(x + s, 0, 2 s) / (2 s / 255))``,
            identical to the reference's ``fast_8bit_uniform_scalar_quantize``;
            ``"int8"``: ``round(clip(x, -s, s) / (s / 127))``;
            ``"binary"``: sign bits (x > 0) packed 8 per byte (uint8, dim/8 columns).
        scale: The clipping limit ``s`` of the 8-bit formats (values beyond ±s
            saturate); default 0.5 here, for compatibility. The engines and the CLI
            default to :data:`INT8_SCALE` for int8 (see :func:`default_scale`).
        limit: The older name of `scale`.

    Returns:
        uint8 (uint8, binary) or int8 array.

    Raises:
        ValueError: `emb` is not 2-dimensional, the scale is not positive, `scale` and
            `limit` disagree, or `precision` is unknown.
    """
    s = _scale_argument(scale, limit)
    s = 0.5 if s is None else s
    x = np.asarray(emb, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"emb must be 2-dimensional (n, dim), got shape {x.shape}")
    if precision in ("uint8", "int8") and not s > 0:
        raise ValueError(f"scale must be > 0, got {s}")
    if precision == "uint8":
        # float64 arithmetic, as the reference's numba kernel, so the bins agree exactly
        width = 2 * s / 255
        return np.rint(np.clip(x.astype(np.float64) + s, 0, 2 * s) / width).astype(np.uint8)
    if precision == "int8":
        return np.rint(np.clip(x, -s, s) / (s / 127)).astype(np.int8)
    if precision == "binary":
        return np.packbits(x > 0, axis=1)
    raise ValueError(f'precision must be "uint8", "int8" or "binary", got {precision!r}')


def column_metadata(precision: str, dim: int, *, scale: float | None = None, **extra: Any) -> dict[str, Any]:
    """The description of one embedding column, as stored under :data:`METADATA_KEY`.

    Args:
        precision: ``"float32"``, ``"int8"``, ``"uint8"`` or ``"binary"``.
        dim: Floats per embedding (for binary: bits, before packing).
        scale: The quantisation limit of int8/uint8 codes (None otherwise).
        extra: Further JSON-able fields.
    """
    meta: dict[str, Any] = {"precision": precision, "dim": int(dim)}
    if scale is not None:
        meta["scale"] = float(scale)
    meta.update(extra)
    return meta


def parquet_metadata(
    dim: int, precision: str | None = None, *, scale: float | None = None, column: str = "embedding"
) -> dict[str, str]:
    """File-level metadata recording how `column` was stored, for writers that cannot
    carry column metadata: ``ddf.to_parquet(path, custom_metadata=...)`` (Dask),
    ``df.write_parquet(path, metadata=...)`` (Polars), or
    ``table.replace_schema_metadata({**table.schema.metadata, **...})`` (pyarrow). A file
    written with it is read by :func:`dequantize` with no arguments.

    Args:
        dim: Floats per embedding (the model's ``dim``).
        precision: None or ``"float32"`` (float embeddings), ``"int8"``, ``"uint8"`` or
            ``"binary"``: the `quantize` the column was made with.
        scale: The scale it was made with; default that of :func:`default_scale`, as the
            engines use.
        column: The embedding column's name.

    Returns:
        ``{"luxical": JSON}`` (str keys and values; pyarrow and Dask take them as bytes).

    Raises:
        ValueError: an unknown precision, or a scale for a precision without one.
    """
    from luxical._luxical import __version__

    if precision not in (None, "float32", "int8", "uint8", "binary"):
        raise ValueError(f'precision must be None, "float32", "int8", "uint8" or "binary", got {precision!r}')
    precision = precision or "float32"
    record = column_metadata(precision, dim, scale=resolve_scale(precision, scale))
    meta = {"format": _METADATA_FORMAT, "luxical_version": __version__, "columns": {column: record}}
    return {METADATA_KEY.decode(): json.dumps(meta)}


def _record(value: Any, column: str, where: str) -> dict[str, Any] | None:
    """The column's record within one metadata value (JSON text, or Spark's parsed dict):
    a field-level record, or the file-level one's entry for `column`."""
    if isinstance(value, (bytes, str)):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"column {column!r}: the {where} {METADATA_KEY.decode()!r} metadata is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"column {column!r}: the {where} {METADATA_KEY.decode()!r} metadata is {value!r}, expected a JSON object")
    if "precision" in value:  # field-level: the column's own record
        return value
    found = value.get("columns", {}).get(column)
    return found if isinstance(found, dict) else None


def stored_quantization(schema: Any, column: str = "embedding") -> dict[str, Any] | None:
    """What luxical recorded about `column` of a pyarrow schema, or None when nothing is
    recorded. Looked up in order: the field's metadata (``luxical embed``, Ray Data), the
    schema metadata (files; Dask and Polars through :func:`parquet_metadata`), and the
    StructField metadata in the Spark schema that Spark's Parquet writer stores.

    Raises:
        ValueError: a luxical record that is not a JSON object.
    """
    field = schema.field(column) if column in schema.names else None
    if field is not None and field.metadata and METADATA_KEY in field.metadata:
        found = _record(field.metadata[METADATA_KEY], column, "field")
        if found is not None:
            return found
    meta = schema.metadata or {}
    if METADATA_KEY in meta:
        found = _record(meta[METADATA_KEY], column, "schema")
        if found is not None:
            return found
    if _SPARK_SCHEMA_KEY in meta:
        try:
            spark_schema = json.loads(meta[_SPARK_SCHEMA_KEY])
        except ValueError:
            return None  # not ours to judge; the file simply records nothing for luxical
        for f in spark_schema.get("fields", []):
            if isinstance(f, dict) and f.get("name") == column:
                value = (f.get("metadata") or {}).get(METADATA_KEY.decode())
                return None if value is None else _record(value, column, "Spark column")
    return None


def _codes_of(table: Any, column: str, where: str) -> np.ndarray:
    """The (n, width) values of an embedding column: fixed-size lists (``luxical embed``,
    Polars), lists (Spark ``array``, Ray, Dask) or binary rows (Spark and Ray uint8 /
    binary codes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column not in table.schema.names:
        raise ValueError(f"{where}: no column {column!r} (columns: {table.schema.names})")
    col = table.column(column)
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    kind = col.type
    if col.null_count:
        raise ValueError(
            f"{where}: column {column!r} has {col.null_count} null rows (null texts under nulls=\"null\"); "
            f"drop them first, e.g. table.filter(pyarrow.compute.is_valid(table[{column!r}]))"
        )
    n = len(col)
    if pa.types.is_fixed_size_list(kind):
        return np.asarray(col.flatten().to_numpy(zero_copy_only=False)).reshape(n, kind.list_size)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_list_view(kind):
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False) if n else np.zeros(0, dtype=np.int64)
        values = np.asarray(col.flatten().to_numpy(zero_copy_only=False))
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        offset_type = np.int64 if pa.types.is_large_binary(kind) else np.int32
        offsets = np.frombuffer(col.buffers()[1], dtype=offset_type)[col.offset : col.offset + n + 1] if n else np.zeros(1, dtype=np.int64)
        lengths = np.diff(offsets)
        data = col.buffers()[2]
        values = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] if n else np.zeros(0, dtype=np.uint8)
    else:
        raise ValueError(f"{where}: column {column!r} is {kind}, expected lists or binary rows of embedding values")
    if n and (lengths != lengths[0]).any():
        bad = int(np.flatnonzero(lengths != lengths[0])[0])
        raise ValueError(f"{where}: column {column!r} row {bad} holds {int(lengths[bad])} values, row 0 holds {int(lengths[0])}")
    return values.reshape(n, int(lengths[0]) if n else 0)


def _read_table(path: str | os.PathLike[str], column: str) -> Any:
    """The `column` of a Parquet file or of a directory of them (as Spark, Dask and Ray
    write), with the schema (and its metadata) of the files."""
    import pyarrow.dataset as pads

    where = os.fspath(path)
    if not os.path.exists(where):
        raise FileNotFoundError(f"no such Parquet file or directory: {where}")
    dataset = pads.dataset(where, format="parquet")
    if column not in dataset.schema.names:
        raise ValueError(f"{where}: no column {column!r} (columns: {dataset.schema.names})")
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = dict(dataset.schema.metadata or {})
    if METADATA_KEY not in meta and dataset.files:
        # A file with a stored Arrow schema (ARROW:schema) gets its schema metadata from it;
        # key-values written beside it (Polars' write_parquet(metadata=...)) are only in
        # the Parquet footer.
        footer = pq.read_metadata(dataset.files[0], filesystem=dataset.filesystem).metadata or {}
        meta.update({k: v for k, v in footer.items() if k in (METADATA_KEY, _SPARK_SCHEMA_KEY)})
    values = dataset.to_table(columns=[column]).column(column)
    # the projection drops the files' metadata, which holds the record
    return pa.Table.from_arrays([values], schema=pa.schema([dataset.schema.field(column)], metadata=meta))


def dequantize(
    q: Any,
    precision: Precision | None = None,
    *,
    scale: float | None = None,
    limit: float | None = None,
    dim: int | None = None,
    column: str = "embedding",
) -> np.ndarray:
    """Inverse of :func:`quantize` (float32).

    `q` may be codes (a numpy array), or what luxical wrote with its record (see the
    module's docstring): a pyarrow Table or RecordBatch (Ray Data blocks, ``luxical embed``
    files read with pyarrow), or the path of a Parquet file or of a directory of them
    (``luxical embed``, Spark's ``df.write.parquet``, Ray's ``write_parquet``, Dask's
    ``to_parquet`` and Polars' ``write_parquet`` with :func:`parquet_metadata`); `column`
    names the embedding column. A recorded precision, scale and dim are used, so no other
    argument is needed; an explicit one must agree with the record. Without a record
    (bare codes, or a file written without one) the scale is `scale`, else 0.5, the
    default of :func:`quantize`: codes made by the engines or the CLI at their int8
    default need ``scale=INT8_SCALE``. For ``"binary"``, bits become ±1/sqrt(dim) (unit
    rows); pass `dim` when it is not a multiple of 8 and not recorded. A float column is
    returned as float32.

    Args:
        q: int8/uint8 codes (n, width), a pyarrow Table / RecordBatch, or a Parquet path.
        precision: ``"uint8"``, ``"int8"`` or ``"binary"``; default: the recorded one, else
            ``"int8"`` for int8 values and ``"uint8"`` otherwise.
        scale: The quantisation scale (clipping limit); default: the recorded one, else 0.5.
        limit: The older name of `scale`.
        dim: Embedding size of binary codes; default: the recorded one, else 8 × width.
        column: The embedding column of a table or file.

    Returns:
        float32 array (n, dim).

    Raises:
        ValueError: an explicit argument contradicts the record (both are named), the
            column is missing, holds nulls or rows of different lengths, or `precision` is
            unknown.
        FileNotFoundError: a path that does not exist.
    """
    name = "limit" if limit is not None and scale is None else "scale"
    scale = _scale_argument(scale, limit)
    stored: dict[str, Any] | None = None
    where = "codes"
    if isinstance(q, (str, os.PathLike)):
        where = os.fspath(q)
        q = _read_table(q, column)
    if type(q).__module__.startswith("pyarrow") and hasattr(q, "schema") and hasattr(q, "column"):
        where = where if where != "codes" else "table"
        stored = stored_quantization(q.schema, column)
        q = _codes_of(q, column, where)
    codes = np.asarray(q)
    if stored is not None:
        recorded = stored.get("precision")
        if recorded == "float32" or codes.dtype.kind == "f":
            if precision is not None:
                raise ValueError(f"{where}: column {column!r} holds float embeddings, not {precision} codes")
            return codes.astype(np.float32)
        if precision is not None and precision != recorded:
            raise ValueError(f"{where}: column {column!r} holds {recorded} codes, but precision={precision!r} was passed")
        precision = recorded
        if stored.get("scale") is not None:
            if scale is not None and not np.isclose(scale, stored["scale"], rtol=0, atol=1e-12):
                raise ValueError(
                    f"{where}: column {column!r} was quantised with scale {stored['scale']}, but {name}={scale} was "
                    "passed; drop the argument to use the recorded scale"
                )
            scale = float(stored["scale"])
        if precision == "binary" and stored.get("dim") is not None:
            if dim is not None and dim != stored["dim"]:
                raise ValueError(f"{where}: column {column!r} records dim {stored['dim']}, but dim={dim} was passed")
            dim = int(stored["dim"])
    elif where != "codes" and codes.dtype.kind == "f":
        return codes.astype(np.float32)
    if precision is None:
        precision = "int8" if codes.dtype == np.int8 else "uint8"
    scale = 0.5 if scale is None else scale
    if precision == "uint8":
        return (np.float32(-scale) + np.float32(2 * scale / 255) * codes).astype(np.float32)
    if precision == "int8":
        return (codes.astype(np.float32) * np.float32(scale / 127)).astype(np.float32)
    if precision == "binary":
        bits = np.unpackbits(codes, axis=1)
        if dim is not None:
            bits = bits[:, :dim]
        return ((bits.astype(np.float32) * 2 - 1) / np.sqrt(bits.shape[1])).astype(np.float32)
    raise ValueError(f'precision must be "uint8", "int8" or "binary", got {precision!r}')
