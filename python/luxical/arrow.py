"""Arrow helpers: embeddings ↔ ``FixedSizeList`` columns (needs pyarrow)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["from_fixed_size_list", "to_fixed_size_list"]


def to_fixed_size_list(emb: np.ndarray) -> Any:
    """A ``pyarrow.FixedSizeListArray`` of the rows of `emb` (n, dim), zero-copy for a
    C-contiguous array."""
    import pyarrow as pa

    emb = np.ascontiguousarray(emb)
    if emb.ndim != 2:
        raise ValueError(f"emb must be 2-dimensional (n, dim), got shape {emb.shape}")
    return pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])


def from_fixed_size_list(array: Any) -> np.ndarray:
    """The (n, dim) numpy array of a ``FixedSizeListArray`` or ``ChunkedArray`` of them
    (null rows are refused)."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_fixed_size_list(array.type):
        raise TypeError(f"expected a fixed_size_list array, got {array.type}")
    if array.null_count:
        raise ValueError(f"{array.null_count} null rows; fill them before converting")
    dim = array.type.list_size
    values = array.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(array), dim)
