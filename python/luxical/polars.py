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
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import polars as pl

import luxical
from luxical._columns import NULLS_HINT, check_options, embed_column, embed_column_with_heads, parquet_metadata
from luxical._luxical import DEFAULT_MAX_TOKENS
from luxical.embedder import Embedder
from luxical.heads import CentroidHead, Head, resolve

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

