"""Dask integration (needs ``dask[dataframe]``; ``distributed`` for clusters).

::

    import luxical.dask
    emb = luxical.dask.embed_array(ddf["text"], model="model.npz")    # dask array (n, dim)
    ser = luxical.dask.embed_series(ddf["text"], model="model.npz")   # Series of vectors

or the ``map_partitions`` recipe they wrap::

    ddf["text"].map_partitions(luxical.dask.embed_partition, "model.npz", meta=("text", object))

A model given as a path travels to the workers as that path (a few bytes per task) and is
loaded once per worker process (``luxical.load`` caches it), so the file must be readable
on every worker: a shared filesystem, or the default model shipped in the wheel
(``model=None``). An `Embedder` travels as itself: pickled by path with its precision
when it was loaded from a file (loaded once per worker process too), else by its bytes,
so the workers embed exactly as it does (int8 stays int8). ``max_tokens`` is that of
:meth:`luxical.Embedder.__call__`.
Give each worker process as many threads as it has cores to spare with ``num_threads``
(default: all cores, which oversubscribes when a host runs several worker processes).

``quantize="int8"`` (``"uint8"``, ``"binary"``) gives codes instead of floats, int8 at
:data:`luxical.quantize.INT8_SCALE` unless ``scale=`` says otherwise. A pandas/Dask column
has no metadata to hold that scale, so record it in the files when writing them::

    ddf["embedding"] = luxical.dask.embed_series(ddf["text"], "model.npz", quantize="int8")
    ddf.to_parquet("out/", schema=None,
                   custom_metadata=luxical.dask.parquet_metadata("model.npz", quantize="int8"))
    luxical.dequantize("out/")    # float32, at the recorded scale

``schema=None`` lets pyarrow type the vectors per partition (``list<float>`` /
``list<int8>`` / ``list<uint8>``): Dask's default ``schema="infer"`` cannot infer a column
of numpy arrays and fails. ``custom_metadata`` goes into every file's schema metadata,
which :func:`luxical.dequantize` reads (``schema=`` cannot carry field metadata: it takes
types only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import luxical
from collections.abc import Sequence

from luxical._columns import NULLS_HINT, check_options, embed_column, embed_column_with_heads, parquet_metadata
from luxical._luxical import DEFAULT_MAX_TOKENS
from luxical.embedder import Embedder
from luxical.heads import Head, resolve

if TYPE_CHECKING:
    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd

__all__ = ["embed_array", "embed_frame", "embed_partition", "embed_series", "heads_partition", "parquet_metadata"]


def _model_arg(model: str | os.PathLike[str] | Embedder | None) -> Embedder | None:
    """What travels to the workers: None (the default model of the workers' wheel), or an
    Embedder, whose pickle keeps everything that defines it (path or bytes, precision, and
    the model's fingerprint). A path is loaded here on the driver first, so that a worker
    whose file at that path holds another model raises ``ModelFileChangedError`` instead of
    silently embedding with it."""
    if model is None or isinstance(model, Embedder):
        return model
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    return luxical.load(path.resolve())


def embed_partition(
    texts: pd.Series,
    model: str | Embedder | None = None,
    *,
    nulls: str = "error",
    quantize: str | None = None,
    scale: float | None = None,
    num_threads: int | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> pd.Series:
    """Embeds one pandas partition: a Series (same index) of float32 vectors, or of
    int8/uint8 codes with `quantize` (`scale` as in :func:`embed_series`).

    Null texts: ``"error"`` raises naming the row label, ``"empty"`` gives a zero vector,
    ``"null"`` gives None.
    """
    import pandas as pd

    scale = check_options(nulls, quantize, max_tokens, scale)
    if nulls == "error":
        _refuse_nulls(texts)
    embedder = luxical.load(model)
    emb, mask = embed_column(
        embedder, texts, nulls=nulls, quantize=quantize, scale=scale, num_threads=num_threads,
        batch_size=batch_size, max_tokens=max_tokens,
    )
    rows: list[Any] = list(emb)
    if mask is not None:
        for i in np.flatnonzero(mask):
            rows[i] = None
    return pd.Series(rows, index=texts.index, name=texts.name, dtype=object)


def _refuse_nulls(texts: pd.Series) -> None:
    mask = texts.isna().to_numpy(dtype=bool)
    if mask.any():
        label = texts.index[int(np.flatnonzero(mask)[0])]
        label = label.item() if hasattr(label, "item") else label
        raise ValueError(
            f"text at index label {label!r} is null ({int(mask.sum())} nulls in this partition); {NULLS_HINT}"
        )


def _embed_block(
    texts: pd.Series, model: str | Embedder | None, nulls: str, num_threads: int | None, batch_size: int,
    max_tokens: int | None = DEFAULT_MAX_TOKENS, quantize: str | None = None, scale: float | None = None,
) -> np.ndarray:
    if nulls == "error":
        _refuse_nulls(texts)
    embedder = luxical.load(model)
    emb, _ = embed_column(
        embedder, texts, nulls=nulls, quantize=quantize, scale=scale, num_threads=num_threads,
        batch_size=batch_size, max_tokens=max_tokens,
    )
    return emb


def embed_series(
    series: dd.Series,
    model: str | os.PathLike[str] | Embedder | None = None,
    *,
    nulls: str = "error",
    quantize: str | None = None,
    scale: float | None = None,
    num_threads: int | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> dd.Series:
    """A dask Series of float32 vectors (object dtype; numpy arrays, None for a null text
    under ``nulls="null"``), same index and partitions as `series`.

    Args:
        series: The dask Series of texts.
        model: Path of a ``.npz`` model (readable on every worker), an `Embedder`, or None
            for the default model.
        nulls: ``"error"`` (names the row label), ``"empty"`` (zero vector) or ``"null"``.
        quantize: None (float32 vectors), ``"int8"``, ``"uint8"`` or ``"binary"`` (codes,
            see :func:`luxical.quantize`).
        scale: Clipping limit of 8-bit codes; default :data:`luxical.quantize.INT8_SCALE`
            (0.6) for int8, 0.5 (the reference's) for uint8. Not stored in the frame:
            write it with :func:`parquet_metadata`.
        num_threads: Threads per partition (default: all cores).
        batch_size: Texts per native call.
        max_tokens: As in :meth:`luxical.Embedder.__call__`.

    Raises:
        ValueError: a bad option value (here, not on the workers).
    """
    scale = check_options(nulls, quantize, max_tokens, scale)
    return series.map_partitions(
        embed_partition, _model_arg(model), nulls=nulls, quantize=quantize, scale=scale, num_threads=num_threads,
        batch_size=batch_size, max_tokens=max_tokens, meta=(series.name, object),
    )


def embed_array(
    series: dd.Series,
    model: str | os.PathLike[str] | Embedder | None = None,
    *,
    nulls: str = "error",
    quantize: str | None = None,
    scale: float | None = None,
    num_threads: int | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> da.Array:
    """A dask array ``(n, dim)`` float32, one block per partition of `series` (the block
    lengths are unknown until computed; ``.compute_chunk_sizes()`` finds them). Nulls:
    ``"error"`` or ``"empty"`` (zero rows). With `quantize`: int8 / uint8 codes, ``(n,
    ceil(dim / 8))`` uint8 for ``"binary"`` (`scale` as in :func:`embed_series`)."""
    import dask
    import dask.array as da

    scale = check_options(nulls, quantize, max_tokens, scale)
    if nulls == "null":
        raise ValueError('embed_array cannot hold nulls; use nulls="empty" or embed_series')
    arg = _model_arg(model)
    dim = luxical.load(model).dim if not isinstance(arg, Embedder) else arg.dim
    dtype = {None: np.float32, "int8": np.int8}.get(quantize, np.uint8)
    width = (dim + 7) // 8 if quantize == "binary" else dim
    blocks = [
        da.from_delayed(
            dask.delayed(_embed_block)(part, arg, nulls, num_threads, batch_size, max_tokens, quantize, scale),
            shape=(np.nan, width),
            dtype=dtype,
        )
        for part in series.to_delayed()
    ]
    if not blocks:
        return da.zeros((0, width), dtype=dtype)
    return da.concatenate(blocks, axis=0)


def heads_partition(
    texts: pd.Series,
    model: str | Embedder | None,
    heads: Sequence[Head],
    *,
    embedding_column: str | None = "embedding",
    nulls: str = "error",
    quantize: str | None = None,
    scale: float | None = None,
    num_threads: int | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> pd.DataFrame:
    """Embeds one pandas partition and applies `heads` in the same pass: a DataFrame (same
    index) with `embedding_column` (float32 vectors, or codes with `quantize`; omitted
    when None) and the heads' columns (``Float32`` scores and cosines, ``Int32`` ids;
    nullable dtypes, null where the text is null under ``nulls="null"``). The heads see
    the float embeddings."""
    import pandas as pd

    scale = check_options(nulls, quantize, max_tokens, scale)
    if nulls == "error":
        _refuse_nulls(texts)
    embedder = luxical.load(model).with_heads(*heads)
    emb, mask, columns = embed_column_with_heads(
        embedder, texts, nulls=nulls, quantize=quantize, scale=scale, num_threads=num_threads,
        batch_size=batch_size, max_tokens=max_tokens, embeddings=embedding_column is not None,
    )
    data: dict[str, Any] = {}
    if emb is not None:
        rows: list[Any] = list(emb)
        if mask is not None:
            for i in np.flatnonzero(mask):
                rows[i] = None
        data[embedding_column] = pd.Series(rows, index=texts.index, dtype=object)  # type: ignore[index]
    for name, values in columns.items():
        dtype = "Int32" if values.dtype == np.int32 else "Float32"
        col = pd.array(values, dtype=dtype)
        if mask is not None:
            col[mask] = pd.NA
        data[name] = pd.Series(col, index=texts.index)
    return pd.DataFrame(data, index=texts.index)


def embed_frame(
    series: dd.Series,
    model: str | os.PathLike[str] | Embedder | None = None,
    *,
    heads: Sequence[Head | str | os.PathLike[str]],
    embedding_column: str | None = "embedding",
    nulls: str = "error",
    quantize: str | None = None,
    scale: float | None = None,
    num_threads: int | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> dd.DataFrame:
    """A dask DataFrame (same index and partitions as `series`) with the embeddings and the
    columns of `heads` (:mod:`luxical.heads` objects or head file paths, read here and
    sent to the workers by value), computed in one pass; ``embedding_column=None`` keeps
    only the heads' columns. `quantize` and `scale` as in :func:`embed_series`. See
    :func:`heads_partition`."""
    import pandas as pd

    scale = check_options(nulls, quantize, max_tokens, scale)
    head_objs = resolve(heads)
    if not head_objs:
        raise ValueError("embed_frame needs at least one head; use embed_series for embeddings alone")
    arg = _model_arg(model)
    meta: dict[str, Any] = {}
    if embedding_column is not None:
        meta[embedding_column] = pd.Series([], dtype=object)
    for h in head_objs:
        for c in h.columns:
            meta[c] = pd.Series([], dtype="Int32" if h.kind == "centroid" and c.endswith("_id") else "Float32")
    return series.map_partitions(
        heads_partition, arg, head_objs, embedding_column=embedding_column, nulls=nulls,
        quantize=quantize, scale=scale, num_threads=num_threads, batch_size=batch_size, max_tokens=max_tokens, meta=pd.DataFrame(meta),
    )

