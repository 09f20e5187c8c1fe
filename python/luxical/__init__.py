"""Luxical: dense text embeddings at the speed of lexical tools.

    >>> import luxical
    >>> vectors = luxical.embed(["some text", "more text"], model="model.npz")  # doctest: +SKIP

Pipeline per document: tokenize (Hugging Face tokenizer.json) → 1..N-gram features →
TF-IDF, L2-normalised → sparse-to-dense ReLU network → L2-normalised embedding, all in a
Rust core that releases the GIL and runs on a thread pool.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from luxical._luxical import __version__
from luxical._luxical import cpu_info as _cpu_info
from luxical.embedder import Embedder, clear_weight_cache, weight_cache_dir
from luxical.quantize import dequantize, quantize
from luxical.health import HealthReport, health_report
from luxical.errors import (
    HeadFormatError,
    LuxicalError,
    ModelFileChangedError,
    ModelFormatError,
    TokenizationError,
    UnsupportedFormatVersionError,
)
from luxical import train  # a callable module: luxical.train(corpus, teacher, "out.npz")

__all__ = [
    "Embedder",
    "HeadFormatError",
    "HealthReport",
    "LuxicalError",
    "ModelFileChangedError",
    "ModelFormatError",
    "TokenizationError",
    "UnsupportedFormatVersionError",
    "__version__",
    "clear_weight_cache",
    "cpu_info",
    "default_model_path",
    "dequantize",
    "embed",
    "health_report",
    "load",
    "quantize",
    "train",
    "weight_cache_dir",
]

_DEFAULT_MODEL_FILE = Path(__file__).parent / "models" / "default.npz"
_cache: dict[tuple[str, str, bool | None], Embedder] = {}
_cache_lock = threading.Lock()


def cpu_info() -> dict[str, Any]:
    """The CPU features luxical's dense layers use and the kernels this process runs.

    The kernels are chosen once per process, on first use: the best this CPU has
    (``"amx"`` > ``"avx512"`` > ``"avx2"`` > ``"portable"``; ``amx`` is int8 only, its
    float32 kernel is AVX-512F's), unless ``LUXICAL_KERNEL`` names another
    (``portable``, ``avx2``, ``avx512`` or ``amx``) or ``LUXICAL_NO_SIMD`` is true (portable; it
    wins over ``LUXICAL_KERNEL``). A kernel the CPU lacks or an unknown name falls back to
    the best the CPU has below it, with a `LuxicalWarning`; set the variables before the
    first embedding. The float32 kernels give results within float rounding of each other
    (AVX2 and AVX-512 bit-identical); the int8 kernels give bit-identical results.

    Returns:
        A dict: ``arch`` (the build's CPU architecture), ``features`` (feature name ->
        present: ``avx2``, ``fma``, ``avx512f``, ``avx512bw``, ``avx512vnni``,
        ``amx_tile``, ``amx_int8``, ``amx_bf16``, and ``amx_os``: the OS granted this
        process the AMX tile state), ``float32_kernels`` and ``int8_kernels`` (the kernels
        this CPU runs, worst to best), ``float32_kernel`` and ``int8_kernel`` (the ones in
        use; the AVX-512 int8 kernel is ``"avx512-vnni"``, which also needs ``avx512bw``
        and ``avx512vnni``; the AMX one ``"amx-int8"``, which also needs ``amx_tile``,
        ``amx_int8`` and ``amx_os``).

    Example:
        >>> import luxical
        >>> luxical.cpu_info()["float32_kernel"] in ("portable", "avx2", "avx512")
        True
    """
    return _cpu_info()


def default_model_path() -> Path:
    """Path of the model shipped inside the package.

    Raises:
        FileNotFoundError: this build ships no default model.
    """
    if not _DEFAULT_MODEL_FILE.is_file():
        raise FileNotFoundError(
            "this luxical build ships no default model; pass model='path/to/model.npz'"
        )
    return _DEFAULT_MODEL_FILE


def load(
    model: str | os.PathLike[str] | Embedder | None = None,
    *,
    precision: str = "float32",
    mmap: bool | None = None,
) -> Embedder:
    """Loads a model once per process and caches it (cheap to call from a UDF).

    A cached model is returned only while the file still holds it: a replaced or rewritten
    file is noticed (by its stat, else its fingerprint) and loaded again (a file removed
    since keeps its cached model).

    Args:
        model: Path of a ``.npz`` model, an `Embedder` (returned as is), or None for the
            default model shipped in the package.
        precision: ``"float32"`` (exact) or ``"int8"``; see :meth:`Embedder.load`.
        mmap: share the weights between processes through a memory-mapped weight-cache
            file; see :meth:`Embedder.load`.
    """
    if isinstance(model, Embedder):
        return model
    path = default_model_path() if model is None else Path(model)
    key = (str(path.resolve()), precision, mmap)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is None or (path.exists() and not cached._source_unchanged()):
            cached = _cache[key] = Embedder.load(path, precision=precision, mmap=mmap)
        return cached


def embed(texts: Any, model: str | os.PathLike[str] | Embedder | None = None, **kwargs: Any) -> np.ndarray:
    """Embeds texts with `model` (default: the model shipped in the package).

    The model is loaded on first use and cached per process. Keyword arguments are
    those of :meth:`Embedder.__call__` (``batch_size``, ``num_threads``, ``progress``).

    Returns:
        float32 array of shape ``(len(texts), dim)`` with unit-norm (or all-zero) rows.
    """
    return load(model)(texts, **kwargs)
