"""Normalising the text containers users pass (list, numpy, pandas, Arrow)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import numpy as np

# What `prepare_texts` returns: a list of str, or Arrow-layout (data uint8, offsets int64).
Prepared = Union[list, tuple[np.ndarray, np.ndarray]]


def _is_arrow(obj: object) -> bool:
    module = type(obj).__module__
    return module.startswith("pyarrow")


def _arrow_chunks(obj: Any) -> list[Any]:
    import pyarrow as pa

    if isinstance(obj, pa.ChunkedArray):
        return list(obj.chunks)
    return [obj]


def _arrow_to_utf8(obj: Any) -> tuple[np.ndarray, np.ndarray]:
    """Zero-copy view of an Arrow string array's data buffer, with int64 offsets.

    Only the offsets are copied (8 bytes per document) when the array is a StringArray
    (int32 offsets) or a ChunkedArray of several chunks.
    """
    import pyarrow as pa

    chunks = _arrow_chunks(obj)
    datas: list[np.ndarray] = []
    offsets: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    base = 0
    index_base = 0
    for chunk in chunks:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            if pa.types.is_string_view(chunk.type):
                chunk = chunk.cast(pa.large_string())
            else:
                raise TypeError(
                    f"Arrow array of type {chunk.type} is not a string array; "
                    "expected string or large_string"
                )
        if chunk.null_count:
            first_null = int(np.flatnonzero(chunk.is_null().to_numpy(zero_copy_only=False))[0])
            raise TypeError(f"texts[{index_base + first_null}] is null, expected str")
        n = len(chunk)
        _, offsets_buf, data_buf = chunk.buffers()
        off_dtype = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        if n == 0:
            index_base += n
            continue
        offs = np.frombuffer(offsets_buf, dtype=off_dtype, count=n + 1, offset=chunk.offset * np.dtype(off_dtype).itemsize)
        start, end = int(offs[0]), int(offs[-1])
        data = (
            np.frombuffer(data_buf, dtype=np.uint8)[start:end]
            if data_buf is not None
            else np.zeros(0, dtype=np.uint8)
        )
        datas.append(data)
        offsets.append(offs[1:].astype(np.int64) - start + base)
        base += end - start
        index_base += n
    if len(datas) == 1:
        data = datas[0]
    elif datas:
        data = np.concatenate(datas)
    else:
        data = np.zeros(0, dtype=np.uint8)
    return np.ascontiguousarray(data), np.concatenate(offsets)


def prepare_texts(texts: Any) -> Prepared:
    """Returns a list of str, or Arrow-layout UTF-8 (data, offsets) for Arrow input.

    Raises:
        TypeError: `texts` is a single str/bytes, not a container, or holds a non-str item
            (the message names its index).
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            "texts must be a sequence of str, not a single "
            f"{type(texts).__name__}; wrap it in a list: [text]"
        )
    if _is_arrow(texts):
        return _arrow_to_utf8(texts)
    module = type(texts).__module__
    if module.startswith("pandas"):
        array = getattr(texts, "array", None)
        if array is not None and type(array).__name__ == "ArrowStringArray":
            return _arrow_to_utf8(array._pa_array)  # zero-copy for pyarrow-backed strings
        texts = texts.tolist()
    elif isinstance(texts, np.ndarray):
        if texts.ndim != 1:
            raise TypeError(f"texts must be 1-dimensional, got an array of shape {texts.shape}")
        texts = texts.tolist()
    elif isinstance(texts, tuple):
        texts = list(texts)
    elif not isinstance(texts, list):
        if not isinstance(texts, Sequence) and not hasattr(texts, "__iter__"):
            raise TypeError(f"texts must be a sequence of str, got {type(texts).__name__}")
        texts = list(texts)
    return texts


def count(prepared: Prepared) -> int:
    if isinstance(prepared, list):
        return len(prepared)
    return len(prepared[1]) - 1


def slice_prepared(prepared: Prepared, start: int, end: int) -> Prepared:
    if isinstance(prepared, list):
        return prepared[start:end]
    data, offsets = prepared
    return data, offsets[start : end + 1]
