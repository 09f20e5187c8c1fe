"""Compact embedding outputs: uint8 (the reference Luxical's uniform scalar
quantisation), int8 (symmetric) and binary (packed sign bits, like sentence-transformers'
``ubinary``), with their inverses."""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["dequantize", "quantize"]

Precision = Literal["uint8", "int8", "binary"]


def quantize(emb: np.ndarray, precision: Precision = "uint8", *, limit: float = 0.5) -> np.ndarray:
    """Quantises float embeddings (rows of unit norm, so |values| <= 1).

    Args:
        emb: float array (n, dim).
        precision: ``"uint8"``: ``round(clip(x + limit, 0, 2 limit) / (2 limit / 255))``,
            identical to the reference's ``fast_8bit_uniform_scalar_quantize``;
            ``"int8"``: ``round(clip(x, -limit, limit) / (limit / 127))``;
            ``"binary"``: sign bits (x > 0) packed 8 per byte (uint8, dim/8 columns).
        limit: Clipping range for the 8-bit formats (values beyond ±limit saturate).

    Returns:
        uint8 (uint8, binary) or int8 array.
    """
    x = np.asarray(emb, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"emb must be 2-dimensional (n, dim), got shape {x.shape}")
    if precision in ("uint8", "int8") and not limit > 0:
        raise ValueError(f"limit must be > 0, got {limit}")
    if precision == "uint8":
        # float64 arithmetic, as the reference's numba kernel, so the bins agree exactly
        width = 2 * limit / 255
        return np.rint(np.clip(x.astype(np.float64) + limit, 0, 2 * limit) / width).astype(np.uint8)
    if precision == "int8":
        return np.rint(np.clip(x, -limit, limit) / (limit / 127)).astype(np.int8)
    if precision == "binary":
        return np.packbits(x > 0, axis=1)
    raise ValueError(f'precision must be "uint8", "int8" or "binary", got {precision!r}')


def dequantize(q: np.ndarray, precision: Precision = "uint8", *, limit: float = 0.5, dim: int | None = None) -> np.ndarray:
    """Inverse of :func:`quantize` (float32). For ``"binary"``, bits become ±1/sqrt(dim)
    (unit rows); pass `dim` when it is not a multiple of 8."""
    q = np.asarray(q)
    if precision == "uint8":
        return (np.float32(-limit) + np.float32(2 * limit / 255) * q).astype(np.float32)
    if precision == "int8":
        return (q.astype(np.float32) * np.float32(limit / 127)).astype(np.float32)
    if precision == "binary":
        bits = np.unpackbits(q, axis=1)
        if dim is not None:
            bits = bits[:, :dim]
        return ((bits.astype(np.float32) * 2 - 1) / np.sqrt(bits.shape[1])).astype(np.float32)
    raise ValueError(f'precision must be "uint8", "int8" or "binary", got {precision!r}')
