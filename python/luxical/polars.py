"""Polars integration (needs ``polars`` and ``pyarrow``: ``pip install 'luxical[polars]'``).

Importing the module registers a ``luxical`` expression namespace::

    import polars as pl
    import luxical.polars

    df = pl.DataFrame({"text": ["free software", "a JSON parser", None]})
    df.with_columns(emb=pl.col("text").luxical.embed(nulls="empty"))     # Array(Float32, dim)
    luxical.polars.embed_frame(df.lazy(), "text", nulls="null").collect(engine="streaming")

The expression is an elementwise ``map_batches`` with its return dtype declared, so it
works in eager and lazy frames, in ``select`` / ``with_columns``, and in the streaming
engine (which embeds morsel by morsel). Each batch reaches the native core as one Arrow
string array (no Python loop over the texts) and comes back as one ``Array`` column whose
values buffer is the embeddings array itself.

The model is loaded when the expression is built, through :func:`luxical.load`, so once
per process; the expression holds the `Embedder` (it pickles by path, or by bytes for a
model built in memory). Polars may run several batches at once on its own threads: each
call embeds with `num_threads` threads (default: all cores); with the streaming engine
on a busy host, ``num_threads=1`` or ``2`` avoids oversubscribing the cores.

``quantize="int8"`` gives ``Array(Int8, dim)`` codes at
:data:`luxical.quantize.INT8_SCALE` unless ``scale=`` says otherwise. Polars columns have
no field metadata, so the scale is not in the frame; record it in the file when writing
it, and :func:`luxical.dequantize` reads it back::

    out = luxical.polars.embed_frame(df, "text", quantize="int8")
    out.write_parquet("emb.parquet", metadata=luxical.polars.parquet_metadata(quantize="int8"))
    luxical.dequantize("emb.parquet")      # float32, at the recorded scale

(``metadata=`` of ``write_parquet`` / ``sink_parquet`` is marked experimental by Polars;
``out.to_arrow()`` with :func:`luxical.quantize.parquet_metadata` in the schema
metadata, written by ``pyarrow.parquet.write_table``, does the same.)

The namespace also quantises float embedding columns already in a frame, and back:
``pl.col("embedding").luxical.quantize("int8")`` gives the codes of
:func:`luxical.quantize` (at the engines' default scale, :func:`luxical.quantize.default_scale`,
unless ``scale=``), ``pl.col("codes").luxical.dequantize("int8")`` the float32 rows of
:func:`luxical.dequantize`. Both convert each batch to one 2-D numpy array; pass
``dim=`` for ``List`` columns (an ``Array`` column's dtype gives it)::

    df.with_columns(q=pl.col("emb").luxical.quantize("int8"))        # Array(Int8, dim)
    df.with_columns(f=pl.col("q").luxical.dequantize("int8"))        # Array(Float32, dim)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import numpy as np
import polars as pl

import luxical
from luxical._columns import NULLS_HINT, check_options, embed_column, embed_column_with_heads, parquet_metadata
from luxical._luxical import DEFAULT_MAX_TOKENS
from luxical.embedder import Embedder
from luxical.heads import CentroidHead, Head, resolve
from luxical.quantize import Precision, resolve_scale

__all__ = ["LuxicalExprNamespace", "embed_frame", "embed_series", "output_dtype", "parquet_metadata"]

#: The struct field holding the embeddings when heads are computed too.
EMBEDDING_FIELD = "embedding"

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def output_dtype(model: Embedder, quantize: str | None = None) -> pl.DataType:
    """The Polars dtype of an embedding column of `model`: ``Array(Float32, dim)``;
    with `quantize`, ``Array(Int8, dim)`` (``"int8"``), ``Array(UInt8, dim)``
    (``"uint8"``) or ``Array(UInt8, ceil(dim / 8))`` (``"binary"``: packed sign bits).
    The dtype does not hold the scale of 8-bit codes (int8: 0.6, uint8: 0.5 unless
    ``scale=`` was given): write it with :func:`parquet_metadata`."""
    if quantize is None:
        return pl.Array(pl.Float32, model.dim)
    if quantize == "int8":
        return pl.Array(pl.Int8, model.dim)
    if quantize == "uint8":
        return pl.Array(pl.UInt8, model.dim)
    if quantize == "binary":
        return pl.Array(pl.UInt8, (model.dim + 7) // 8)
    raise ValueError(f'quantize must be None, "uint8", "int8" or "binary", got {quantize!r}')


def _head_dtype(head: Head, column: str) -> pl.DataType:
    # As luxical.heads.columns_from_native: centroid ids int32, every other column float32.
    return pl.Int32() if isinstance(head, CentroidHead) and column.endswith("_id") else pl.Float32()


class _EmbedBatch:
    """The function ``map_batches`` calls on each batch (a picklable object, not a
    closure, so that a lazy plan holding it can be serialised). Built when the expression
    is: checks the options and loads the model (with `heads`, else its own, if any)."""

    def __init__(
        self,
        model: str | os.PathLike[str] | Embedder | None,
        heads: Sequence[Head | str | os.PathLike[str]] | None,
        *,
        nulls: str,
        quantize: str | None,
        scale: float | None,
        num_threads: int | None,
        batch_size: int,
        max_tokens: int | None,
        embeddings: bool,
    ) -> None:
        self.scale = check_options(nulls, quantize, max_tokens, scale)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = luxical.load(model)
        if heads:  # else the model's own heads, if it has any (as luxical.ray)
            self.model = self.model.with_heads(*resolve(heads))
        if not embeddings and not self.model.heads:
            raise ValueError("embeddings=False needs heads (there would be no column to return)")
        self.nulls = nulls
        self.quantize = quantize
        self.num_threads = num_threads
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.embeddings = embeddings
        self.dtype: pl.DataType = output_dtype(self.model, quantize)
        if self.model.heads:
            fields = {EMBEDDING_FIELD: self.dtype} if embeddings else {}
            for head in self.model.heads:
                for column in head.columns:
                    fields[column] = _head_dtype(head, column)
            self.return_dtype: pl.DataType = pl.Struct(fields)
        else:
            self.return_dtype = self.dtype

    def __call__(self, series: pl.Series) -> pl.Series:
        name = series.name
        texts = _texts(series, self.nulls)
        where = f"column {name!r}"
        if self.model.heads:
            emb, mask, columns = embed_column_with_heads(
                self.model, texts, nulls=self.nulls, quantize=self.quantize, scale=self.scale, num_threads=self.num_threads,
                batch_size=self.batch_size, max_tokens=self.max_tokens, where=where, embeddings=self.embeddings,
            )
            parts = [] if emb is None else [pl.Series(EMBEDDING_FIELD, _fixed_size_list(emb, mask))]
            parts += [pl.Series(c, _masked(values, mask)) for c, values in columns.items()]
            out = pl.DataFrame(parts).to_struct(name)
            # `mask` is set only under nulls="null": the null rows' structs are null too.
            return out if mask is None else _null_rows(out, mask)
        emb, mask = embed_column(
            self.model, texts, nulls=self.nulls, quantize=self.quantize, scale=self.scale, num_threads=self.num_threads,
            batch_size=self.batch_size, max_tokens=self.max_tokens, where=where,
        )
        return pl.Series(name, _fixed_size_list(emb, mask))


def _texts(series: pl.Series, nulls: str) -> Any:
    """The batch as one ``pyarrow`` string array; refuses other dtypes and, under
    ``nulls="error"``, nulls (naming the column and the row within the batch)."""
    name, dtype = series.name, series.dtype
    if dtype == pl.Null:  # a column of nulls only
        series = series.cast(pl.String)
    elif dtype in (pl.Categorical, pl.Enum) or isinstance(dtype, (pl.Categorical, pl.Enum)):
        series = series.cast(pl.String)
    elif dtype != pl.String:
        raise TypeError(
            f"column {name!r} has dtype {dtype}, expected String (text); "
            f'cast it first, e.g. pl.col({name!r}).cast(pl.String)'
        )
    n_null = series.null_count()
    if n_null and nulls == "error":
        first = int(series.is_null().arg_max() or 0)
        raise ValueError(
            f"column {name!r} is null at row {first} of a batch of {len(series)} rows "
            f"({n_null} nulls in the batch); {NULLS_HINT}"
        )
    return series.to_arrow()


def _fixed_size_list(emb: np.ndarray, mask: np.ndarray | None) -> Any:
    """A ``pyarrow`` fixed-size list array of the rows of `emb`, null where `mask`; the
    values buffer is `emb` itself."""
    import pyarrow as pa

    emb = np.ascontiguousarray(emb)
    n, width = emb.shape
    values = pa.array(emb.reshape(-1))
    validity = None if mask is None else pa.array(~mask).buffers()[1]
    null_count = 0 if mask is None else int(mask.sum())
    return pa.Array.from_buffers(
        pa.list_(values.type, width), n, [validity], null_count=null_count, children=[values]
    )


def _masked(values: np.ndarray, mask: np.ndarray | None) -> Any:
    import pyarrow as pa

    return pa.array(values, mask=mask)


def _null_rows(out: pl.Series, mask: np.ndarray) -> pl.Series:
    return pl.select(pl.when(pl.lit(pl.Series(mask))).then(None).otherwise(out).alias(out.name)).to_series()


_FLOATS = (pl.Float32, pl.Float64)


class _QuantizeBatch:
    """The function ``map_batches`` calls on each batch of
    :meth:`LuxicalExprNamespace.quantize` (or, with ``inverse=True``,
    :meth:`LuxicalExprNamespace.dequantize`). Built when the expression is: checks the
    options, so that a bad one fails there, and works out the return dtype."""

    def __init__(self, precision: str, scale: float | None, dim: int | None, *, inverse: bool) -> None:
        if precision not in ("uint8", "int8", "binary"):
            raise ValueError(f'precision must be "uint8", "int8" or "binary", got {precision!r}')
        # As the engines: int8 at INT8_SCALE, uint8 at 0.5 unless `scale`; no scale for binary.
        self.scale = resolve_scale(precision, scale)
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1):
            raise ValueError(f"dim must be a positive int (floats per embedding), got {dim!r}")
        self.precision = cast(Precision, precision)
        self.dim = None if dim is None else int(dim)
        self.inverse = inverse
        code = pl.Int8 if precision == "int8" else pl.UInt8
        packed = None if self.dim is None else ((self.dim + 7) // 8 if precision == "binary" else self.dim)
        # What the rows hold: floats (quantize) or codes (dequantize), and how many.
        self.inner: tuple[Any, ...] = (code,) if inverse else _FLOATS
        self.width = packed if inverse else self.dim
        self.out_type: Any = pl.Float32 if inverse else code
        self.return_dtype: pl.DataType | None = None if self.dim is None else pl.Array(self.out_type, self.dim if inverse else packed)

    def __call__(self, series: pl.Series) -> pl.Series:
        name = series.name
        rows, mask = _rows(series, self.inner, self.width, self.precision, self.inverse)
        if self.inverse:
            out = luxical.dequantize(rows, self.precision, scale=self.scale, dim=self.dim if self.precision == "binary" else None)
        else:
            out = luxical.quantize(rows, self.precision, scale=self.scale)
        if mask is not None:  # null rows: zeros under a null validity bit
            full = np.zeros((len(mask), out.shape[1]), dtype=out.dtype)
            full[~mask] = out
            out = full
        return pl.Series(name, _fixed_size_list(out, mask))


def _rows(
    series: pl.Series, inner: tuple[Any, ...], width: int | None, precision: str, inverse: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The non-null rows of an ``Array`` / ``List`` column as one 2-D numpy array (no loop
    over the rows), and the null-row mask (None when there are no null rows)."""
    import pyarrow.compute as pc

    name, dtype = series.name, cast(Any, series.dtype)  # Array / List: .inner, .size
    want = f"{precision} codes, Array({inner[0]}, width)" if inverse else "float embeddings, Array(Float32|Float64, dim)"
    is_list = dtype == pl.Null or isinstance(dtype, pl.List)  # Null: a column of nulls only
    if not (is_list or isinstance(dtype, pl.Array)) or (dtype != pl.Null and dtype.inner not in inner):
        raise TypeError(f"column {name!r} has dtype {dtype}, expected {want} or List of the same values")
    if is_list and width is None:
        raise TypeError(
            f"column {name!r} has dtype {dtype}: pass dim= (floats per embedding) so that the output "
            "dtype is known before the rows are read (an Array column's dtype gives it)"
        )
    expected = f"{width} (dim={width})" if not inverse else f"{width} (the codes of the dim passed)"
    if not is_list and width is not None and dtype.size != width:
        raise ValueError(f"column {name!r} has dtype {dtype}: its rows hold {dtype.size} values, expected {expected}")
    row_width = int(width if is_list and width is not None else dtype.size)
    n_null = series.null_count()
    mask = series.is_null().to_numpy() if n_null else None
    present = series.drop_nulls() if n_null else series
    n = len(present)
    if n == 0:
        empty_type = np.float32 if not inverse else (np.int8 if precision == "int8" else np.uint8)
        return np.zeros((0, row_width), dtype=empty_type), mask
    arr = present.to_arrow()
    values = arr.flatten()
    if is_list:  # every row must hold `width` values (known: a List column needs dim)
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        if (lengths != width).any():
            bad = int(np.flatnonzero(lengths != width)[0])
            index = np.flatnonzero(~mask) if mask is not None else np.arange(n)
            raise ValueError(
                f"column {name!r} row {int(index[bad])} of a batch of {len(series)} rows holds "
                f"{int(lengths[bad])} values, expected {expected}; embeddings need rows of equal length"
            )
    if values.null_count:
        raise ValueError(
            f"column {name!r} holds {values.null_count} null values inside its rows "
            "(a null row stays null; a null value within a row cannot be quantised)"
        )
    return values.to_numpy(zero_copy_only=False).reshape(n, row_width), mask


@pl.api.register_expr_namespace("luxical")
class LuxicalExprNamespace:
    """The ``luxical`` namespace of Polars expressions (registered by ``import
    luxical.polars``): ``pl.col("text").luxical.embed(...)``."""

    def __init__(self, expr: pl.Expr) -> None:
        self._expr = expr

    def embed(
        self,
        model: str | os.PathLike[str] | Embedder | None = None,
        *,
        heads: Sequence[Head | str | os.PathLike[str]] | None = None,
        embeddings: bool = True,
        nulls: str = "error",
        quantize: str | None = None,
        scale: float | None = None,
        num_threads: int | None = None,
        batch_size: int = 4096,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
    ) -> pl.Expr:
        """Embeds a String column (Categorical, Enum and all-null columns are read as
        strings).

        Args:
            model: Path of a ``.npz`` model, an `Embedder` (embeds exactly as it does:
                int8 stays int8), or None for the default model. Loaded now, once per
                process (:func:`luxical.load`).
            heads: Heads (:mod:`luxical.heads` objects or head file paths) computed in the
                same pass; None: those of `model` (an `Embedder` made by
                :meth:`luxical.Embedder.with_heads`), if any. With heads the expression
                gives a Struct: an ``"embedding"`` field
                (unless ``embeddings=False``) and one field per head column (Float32
                scores and cosines, Int32 ids); ``.struct.unnest()`` makes them columns.
            embeddings: With heads only: False returns only the heads' fields.
            nulls: ``"error"`` (default; the error names the column and the row within
                the batch), ``"empty"`` (zero vector; heads see a zero embedding) or
                ``"null"`` (null row).
            quantize: None (float32), ``"int8"``, ``"uint8"`` or ``"binary"`` (see
                :func:`luxical.quantize` and :func:`output_dtype`).
            scale: Clipping limit of 8-bit codes (values beyond ±scale saturate);
                default :data:`luxical.quantize.INT8_SCALE` (0.6) for int8 (it was 0.5
                before; pass ``scale=0.5`` for the old codes) and 0.5 (the reference's)
                for uint8. Polars cannot store it in the column: see
                :func:`parquet_metadata`.
            num_threads: Threads per batch (default: all cores).
            batch_size: Texts per native call; results do not depend on it.
            max_tokens: As in :meth:`luxical.Embedder.__call__`.

        Returns:
            An expression of dtype ``Array(Float32, dim)`` (see :func:`output_dtype` for
            `quantize`), or a Struct with `heads`.

        Raises:
            ValueError: a bad option value (here); a null under ``nulls="error"`` (when
                the frame is computed).
            TypeError: the column is not a String column (when the frame is computed; the
                message names the column and its dtype).
        """
        fn = _EmbedBatch(
            model, heads, nulls=nulls, quantize=quantize, scale=scale, num_threads=num_threads,
            batch_size=batch_size, max_tokens=max_tokens, embeddings=embeddings,
        )
        return self._expr.map_batches(fn, return_dtype=fn.return_dtype, is_elementwise=True)

    def quantize(self, precision: str = "int8", *, scale: float | None = None, dim: int | None = None) -> pl.Expr:
        """Quantises a column of float embeddings: ``Array(Float32|Float64, dim)``, or
        ``List`` of them with rows of equal length. Each batch is converted to one 2-D
        numpy array and quantised by :func:`luxical.quantize`; null rows stay null.

        Args:
            precision: ``"int8"`` (default), ``"uint8"`` or ``"binary"``.
            scale: Clipping limit of 8-bit codes; default as the engines and
                ``embed(quantize=...)``: :data:`luxical.quantize.INT8_SCALE` (0.6) for
                int8, 0.5 for uint8 (see :func:`luxical.quantize.default_scale`). Polars
                cannot store it in the column: see :func:`parquet_metadata`.
            dim: Floats per embedding. Needed for a ``List`` column (its dtype does not
                say), checked against the rows otherwise.

        Returns:
            An expression of dtype ``Array(Int8, dim)`` (int8), ``Array(UInt8, dim)``
            (uint8) or ``Array(UInt8, ceil(dim / 8))`` (binary: packed sign bits).

        Raises:
            ValueError: a bad `precision`, `scale` or `dim` (here); rows of different
                lengths, rows not of `dim` values, null values within a row (when the
                frame is computed; the message names the column).
            TypeError: not a float ``Array`` / ``List`` column, or a ``List`` column
                without `dim` (when the frame is computed; names the column). For
                ``"binary"`` without `dim`, Polars works out the dtype by calling the
                function on a sample of its own, and reports such an error as "not able to
                infer the output type": pass `dim` to get luxical's message.
        """
        fn = _QuantizeBatch(precision, scale, dim, inverse=False)
        return self._expr.map_batches(fn, return_dtype=self._return_dtype(fn), is_elementwise=True)

    def dequantize(self, precision: str = "int8", *, scale: float | None = None, dim: int | None = None) -> pl.Expr:
        """The inverse of :meth:`quantize`: a column of codes (``Array`` or ``List`` of
        Int8 for int8, UInt8 for uint8 and binary) to float32 rows, by
        :func:`luxical.dequantize` on each batch as one 2-D numpy array; null rows stay
        null.

        Args:
            precision: ``"int8"`` (default), ``"uint8"`` or ``"binary"``.
            scale: The scale the codes were made with; default that of :meth:`quantize`
                (:func:`luxical.quantize.default_scale`), not the 0.5 of
                :func:`luxical.dequantize` on bare codes.
            dim: Floats per embedding. Needed for a ``List`` column; for binary codes,
                the bits kept of each row (default 8 × bytes per row).

        Returns:
            An expression of dtype ``Array(Float32, dim)``.

        Raises:
            ValueError, TypeError: as :meth:`quantize` (the codes' dtype must match
                `precision`).
        """
        fn = _QuantizeBatch(precision, scale, dim, inverse=True)
        return self._expr.map_batches(fn, return_dtype=self._return_dtype(fn), is_elementwise=True)

    def _return_dtype(self, fn: _QuantizeBatch) -> pl.DataType | pl.DataTypeExpr | None:
        """`fn`'s declared dtype; without `dim`, for 8-bit codes, that of the input Array
        with its values cast (a lazy schema knows it, and luxical's own errors surface).
        Binary without `dim` changes the width, which a dtype expression cannot say: None
        lets Polars infer it (it calls `fn` on rows of the input's dtype)."""
        if fn.return_dtype is not None or fn.precision == "binary":
            return fn.return_dtype
        return pl.dtype_of(self._expr.arr.eval(pl.element().cast(fn.out_type)))


def embed_series(
    series: pl.Series,
    model: str | os.PathLike[str] | Embedder | None = None,
    *,
    nulls: str = "error",
    quantize: str | None = None,
    scale: float | None = None,
    num_threads: int | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> pl.Series:
    """Embeds a String Series: an ``Array(Float32, dim)`` Series of the same name and
    length (options as in :meth:`LuxicalExprNamespace.embed`; the error for a null names
    its row in `series`)."""
    fn = _EmbedBatch(
        model, None, nulls=nulls, quantize=quantize, scale=scale, num_threads=num_threads,
        batch_size=batch_size, max_tokens=max_tokens, embeddings=True,
    )
    return fn(series)


def embed_frame(
    frame: Frame,
    column: str = "text",
    out: str | None = "embedding",
    model: str | os.PathLike[str] | Embedder | None = None,
    *,
    heads: Sequence[Head | str | os.PathLike[str]] | None = None,
    nulls: str = "error",
    quantize: str | None = None,
    scale: float | None = None,
    num_threads: int | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> Frame:
    """`frame` with the embeddings of `column` added as `out`, and with `heads` their
    columns (Float32 scores and cosines, Int32 ids; null where the embedding is null),
    all computed in one pass. A ``LazyFrame`` stays lazy (collect it with any engine,
    streaming included); a ``DataFrame`` is computed now.

    Args:
        frame: A Polars ``DataFrame`` or ``LazyFrame``.
        column: The String column to embed.
        out: The embeddings column (replaces a column of that name); None adds none
            (with `heads`: only their columns).
        model, heads, nulls, quantize, scale, num_threads, batch_size, max_tokens: As in
            :meth:`LuxicalExprNamespace.embed` (the scale is not in the frame: write it
            with :func:`parquet_metadata`).

    Returns:
        The same kind of frame as `frame`.

    Raises:
        KeyError: `frame` has no column `column`.
        TypeError: `column` is not a String column (names it and its dtype).
        ValueError: a bad option value, ``out=None`` without heads, `out` equal to a head
            column; for a ``DataFrame`` under ``nulls="error"``, a null (names the row).
    """
    if not isinstance(frame, (pl.DataFrame, pl.LazyFrame)):
        raise TypeError(f"frame must be a polars DataFrame or LazyFrame, got {type(frame).__name__}")
    schema = frame.collect_schema()
    if column not in schema:
        raise KeyError(f"no column {column!r} in the frame (columns: {list(schema.names())})")
    dtype = schema[column]
    if not (dtype in (pl.String, pl.Null, pl.Categorical, pl.Enum) or isinstance(dtype, (pl.Categorical, pl.Enum))):
        raise TypeError(
            f"column {column!r} has dtype {dtype}, expected String (text); "
            f"cast it first, e.g. frame.with_columns(pl.col({column!r}).cast(pl.String))"
        )
    embedder = luxical.load(model)
    head_objs = resolve(heads) if heads else list(embedder.heads)
    if out is None and not head_objs:
        raise ValueError("out=None needs heads (there would be no column to add)")
    for head in head_objs:
        if out in head.columns:
            raise ValueError(f"out={out!r} is also a column of head {head.name!r}; choose another name")
    if isinstance(frame, pl.DataFrame) and nulls == "error":
        texts = frame.get_column(column)
        n_null = texts.null_count()
        if n_null:
            first = int(texts.is_null().arg_max() or 0)
            raise ValueError(f"column {column!r} is null at row {first} ({n_null} nulls); {NULLS_HINT}")
    expr = LuxicalExprNamespace(pl.col(column)).embed(
        embedder, heads=head_objs or None, embeddings=out is not None, nulls=nulls, quantize=quantize,
        scale=scale, num_threads=num_threads, batch_size=batch_size, max_tokens=max_tokens,
    )
    if not head_objs:
        assert out is not None
        return frame.with_columns(expr.alias(out))
    fields = [pl.col("__luxical__").struct.field(c) for h in head_objs for c in h.columns]
    if out is not None:
        fields.insert(0, pl.col("__luxical__").struct.field(EMBEDDING_FIELD).alias(out))
    return frame.with_columns(expr.alias("__luxical__")).with_columns(*fields).drop("__luxical__")

