"""Embedding one text column of a data-engine batch (Spark, Dask, Ray, Polars), with a
null policy and optional quantisation at a recorded scale, shared by the integrations."""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np

import luxical
from luxical._luxical import DEFAULT_MAX_TOKENS
from luxical.embedder import Embedder, _check_max_tokens
from luxical.quantize import METADATA_KEY, column_metadata, resolve_scale
from luxical.quantize import parquet_metadata as _parquet_metadata
from luxical.quantize import quantize as _quantize

NullPolicy = Literal["error", "empty", "null"]
_NULL_POLICIES = ("error", "empty", "null")
_PRECISIONS = (None, "uint8", "int8", "binary")
#: The end of every message refusing a null under ``nulls="error"``.
NULLS_HINT = 'pass nulls="empty" to embed nulls as zero vectors or nulls="null" to keep them null'


def check_options(
    nulls: str, quantize: str | None, max_tokens: int | None = DEFAULT_MAX_TOKENS, scale: float | None = None
) -> float | None:
    """Refuses unknown option values early (on the driver, not inside a remote task);
    returns the scale to quantise with (`scale`, else the default of `quantize`: see
    :func:`luxical.quantize.default_scale`; None for float and binary outputs)."""
    _check_max_tokens(max_tokens)
    if nulls not in _NULL_POLICIES:
        raise ValueError(f'nulls must be "error", "empty" or "null", got {nulls!r}')
    if quantize not in _PRECISIONS:
        raise ValueError(f'quantize must be None, "uint8", "int8" or "binary", got {quantize!r}')
    return resolve_scale(quantize, scale)


def parquet_metadata(
    model: str | os.PathLike[str] | Embedder | None = None,
    *,
    quantize: str | None = None,
    scale: float | None = None,
    column: str = "embedding",
) -> dict[str, str]:
    """The Parquet key-value metadata that records how `column` was made (pass the `model`,
    `quantize` and `scale` it was embedded with), so that ``luxical.dequantize(path)``
    reads the file with no arguments: ``{"luxical": JSON}``. For writers whose columns
    carry no metadata: Polars' ``write_parquet`` / ``sink_parquet`` (``metadata=``, see
    :mod:`luxical.polars`) and Dask's ``to_parquet`` (``custom_metadata=``, with
    ``schema=None``: see :mod:`luxical.dask`). :func:`luxical.quantize.parquet_metadata`
    does the same from the model's ``dim``.

    Raises:
        ValueError: a bad `quantize` / `scale` (as the engines' embedding functions).
    """
    scale = check_options("error", quantize, DEFAULT_MAX_TOKENS, scale)
    return _parquet_metadata(luxical.load(model).dim, quantize, scale=scale, column=column)


def embedding_record(dim: int, quantize: str | None, scale: float | None) -> dict[str, Any]:
    """luxical's record of an embedding column (precision, dim, scale): what
    :func:`luxical.dequantize` reads back."""
    return column_metadata(quantize or "float32", dim, scale=scale)


def arrow_field_metadata(dim: int, quantize: str | None, scale: float | None) -> dict[bytes, bytes]:
    """The Arrow field metadata of an embedding column (as ``luxical embed`` writes it)."""
    import json

    return {METADATA_KEY: json.dumps(embedding_record(dim, quantize, scale)).encode()}


def arrow_schema_metadata(
    metadata: dict[bytes, bytes] | None, column: str, dim: int, quantize: str | None, scale: float | None
) -> dict[bytes, bytes]:
    """`metadata` (a table's schema metadata) with `column`'s record added to luxical's
    file-level record (``{"format": 1, "columns": {...}}``, as ``luxical embed`` writes it;
    records of other columns are kept). It outlives steps that drop field metadata, such
    as Ray Data's ``select_columns``."""
    import json

    from luxical._luxical import __version__

    out = dict(metadata or {})
    try:
        record = json.loads(out[METADATA_KEY]) if METADATA_KEY in out else {}
    except ValueError:
        record = {}
    if not isinstance(record, dict) or "precision" in record:
        record = {}
    record.setdefault("format", 1)
    record.setdefault("luxical_version", __version__)
    columns = record.get("columns")
    columns = dict(columns) if isinstance(columns, dict) else {}
    columns[column] = embedding_record(dim, quantize, scale)
    record["columns"] = columns
    out[METADATA_KEY] = json.dumps(record).encode()
    return out


def null_mask(texts: Any) -> np.ndarray | None:
    """Boolean mask of the null items (None/NaN in Python containers, nulls in Arrow), or
    None when there are none."""
    module = type(texts).__module__
    if module.startswith("pyarrow"):
        if texts.null_count == 0:
            return None
        return np.asarray(texts.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if module.startswith("pandas"):
        mask = texts.isna().to_numpy(dtype=bool)
    else:
        mask = np.fromiter((t is None or (isinstance(t, float) and t != t) for t in texts), dtype=bool, count=len(texts))
    return mask if mask.any() else None


def embed_column(
    model: Embedder,
    texts: Any,
    *,
    nulls: str = "error",
    quantize: str | None = None,
    scale: float | None = None,
    num_threads: int | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    where: str = "texts",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Embeds a column that may hold nulls.

    Returns ``(emb, mask)``: the (n, dim) float32 embeddings (or codes quantised at
    `scale`, default that of `quantize`), and the null mask when ``nulls="null"`` and the
    column has nulls (those rows are zero in `emb` and should be written as nulls), else
    None. `max_tokens` is that of :meth:`Embedder.__call__`.

    Raises:
        ValueError: a null under ``nulls="error"``, naming its index within `where`.
    """
    texts, mask = _nulls_filled(texts, nulls, where)
    if model.heads:  # embeddings only here (embed_column_with_heads computes the heads)
        model = model.with_heads()
    emb = model(texts, num_threads=num_threads, batch_size=batch_size, max_tokens=max_tokens)
    if quantize is not None:
        emb = _quantized(emb, quantize, scale)
    if mask is not None and nulls == "null":
        emb[mask] = 0
        return emb, mask
    return emb, None


def embed_column_with_heads(
    model: Embedder,
    texts: Any,
    *,
    nulls: str = "error",
    quantize: str | None = None,
    scale: float | None = None,
    num_threads: int | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    where: str = "texts",
    embeddings: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, np.ndarray]]:
    """:func:`embed_column` for a model with heads (:meth:`Embedder.with_heads`).

    Returns ``(emb, mask, columns)``: the embeddings (or codes; None when `embeddings` is
    False), the null mask as in :func:`embed_column` (those rows of every head column
    should be written as nulls too), and the heads' columns by name.
    """
    texts, mask = _nulls_filled(texts, nulls, where)
    out = model(texts, num_threads=num_threads, batch_size=batch_size, max_tokens=max_tokens, embeddings=embeddings)
    emb = out.embeddings
    if emb is not None and quantize is not None:
        emb = _quantized(emb, quantize, scale)
    keep = mask if mask is not None and nulls == "null" else None
    if keep is not None and emb is not None:
        emb[keep] = 0
    return emb, keep, out.columns


def _quantized(emb: np.ndarray, quantize: str, scale: float | None) -> np.ndarray:
    return _quantize(emb, quantize, scale=resolve_scale(quantize, scale))  # type: ignore[arg-type]


def head_arrow_columns(columns: dict[str, np.ndarray], mask: np.ndarray | None) -> list[Any]:
    """The heads' columns as ``pyarrow`` arrays (float32 scores, int32 ids), null where
    `mask` is True."""
    import pyarrow as pa

    return [pa.array(values, mask=mask) for values in columns.values()]


def _nulls_filled(texts: Any, nulls: str, where: str) -> tuple[Any, np.ndarray | None]:
    """`texts` with nulls made empty strings, and the null mask (None without nulls).

    Raises:
        ValueError: a null under ``nulls="error"``, naming its index within `where`.
    """
    mask = null_mask(texts)
    if mask is None:
        return texts, None
    if nulls == "error":
        first = int(np.flatnonzero(mask)[0])
        raise ValueError(
            f"{where}[{first}] is null ({int(mask.sum())} nulls in this batch); {NULLS_HINT}"
        )
    return _fill_nulls(texts, mask), mask


def _fill_nulls(texts: Any, mask: np.ndarray) -> Any:
    module = type(texts).__module__
    if module.startswith("pyarrow"):
        import pyarrow.compute as pc

        return pc.fill_null(texts, "")
    if module.startswith("pandas"):
        return texts.fillna("")
    return ["" if m else t for t, m in zip(texts, mask)]


def to_arrow_list(emb: np.ndarray, mask: np.ndarray | None = None, *, large: bool = False) -> Any:
    """A ``pyarrow`` list array (one list per row of `emb`), null where `mask` is True;
    the values buffer is `emb` itself (zero-copy for a C-contiguous array)."""
    import pyarrow as pa

    emb = np.ascontiguousarray(emb)
    n, dim = emb.shape
    offset_type = np.int64 if large else np.int32
    offsets = pa.py_buffer(np.arange(0, (n + 1) * dim, dim, dtype=offset_type)[: n + 1])
    values = pa.array(emb.reshape(-1))
    validity = None if mask is None else pa.array(~mask).buffers()[1]
    list_type = pa.large_list(values.type) if large else pa.list_(values.type)
    null_count = 0 if mask is None else int(mask.sum())
    return pa.Array.from_buffers(list_type, n, [validity, offsets], null_count=null_count, children=[values])


def to_arrow_binary(codes: np.ndarray, mask: np.ndarray | None = None) -> Any:
    """A ``pyarrow`` binary array whose row i holds the bytes of ``codes[i]`` (uint8
    codes: the compact form of ``"uint8"`` and ``"binary"`` quantisation)."""
    import pyarrow as pa

    codes = np.ascontiguousarray(codes)
    n, width = codes.shape
    offsets = pa.py_buffer(np.arange(0, (n + 1) * width, width, dtype=np.int32)[: n + 1])
    validity = None if mask is None else pa.array(~mask).buffers()[1]
    null_count = 0 if mask is None else int(mask.sum())
    return pa.Array.from_buffers(pa.binary(), n, [validity, offsets, pa.py_buffer(codes)], null_count=null_count)
