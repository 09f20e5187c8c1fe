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
# (path, precision, mmap) or ("hub", repo id, revision, filename, precision, mmap) -> model
_cache: dict[tuple[Any, ...], Embedder] = {}
# The stat of each cached .safetensors file when it was read (see `load`).
_stamps: dict[tuple[Any, ...], tuple[int, ...] | None] = {}
_cache_lock = threading.Lock()


def cpu_info() -> dict[str, Any]:
    """The CPU features luxical's dense layers use and the kernels this process runs.

    The kernels are chosen once per process, on first use: the best this CPU has
    (``"amx"`` > ``"avx512"`` > ``"avx2"`` > ``"portable"``; ``amx`` covers int8 and bfloat16, its
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
        ``amx_int8`` and ``amx_os``), and likewise ``bfloat16_kernels`` /
        ``bfloat16_kernel`` for ``precision="bfloat16"`` (``"amx-bf16"``: ``amx_bf16``
        and ``amx_os``; ``"avx512-bf16"``: ``avx512bf16``; else ``"portable"``).

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
    revision: str | None = None,
    filename: str | None = None,
    first_layer_dtype: str | None = None,
) -> Embedder:
    """Loads a model once per process and caches it (cheap to call from a UDF).

    What `model` names, checked in this order:

    1. None: the default model shipped in the package; an `Embedder`: itself, as is.
    2. An existing file: that model file, a reference ``.npz`` (format version 1) or, by
       its ``.safetensors`` suffix, the reference's Hugging Face export.
    3. An existing folder: a model folder laid out like a Hub repo (a snapshot); the
       file in it is chosen as by :meth:`Embedder.from_pretrained`.
    4. A ``str`` that is no existing file or folder and has the shape ``owner/name``
       (letters, digits, ``-``, ``_``, ``.``; not ending in ``.npz`` or ``.safetensors``):
       a Hugging Face Hub model repo, through :meth:`Embedder.from_pretrained` (needs
       ``pip install 'luxical[hub]'``). A local folder of the same name wins; write
       ``./owner/name`` to mean only the folder. A ``pathlib.Path`` is never a Hub name.
    5. Anything else: `FileNotFoundError` naming it.

    A cached model from a file is returned only while the file still holds it: a replaced
    or rewritten file is noticed (by its stat, else its fingerprint) and loaded again (a
    file removed since keeps its cached model). A Hub repo is resolved on the first call
    only; later calls with the same arguments return the cached model without contacting
    the Hub.

    Args:
        model: A path, a Hub model id, an `Embedder`, or None (see above).
        precision: ``"float32"`` (exact), ``"int8"`` or ``"bfloat16"``; see
            :meth:`Embedder.load`.
        mmap: share the weights between processes through a memory-mapped weight-cache
            file; see :meth:`Embedder.load`.
        revision: Hub branch, tag or commit hash (Hub repos only; default ``main``).
        filename: The model file inside a Hub repo or a folder.
        first_layer_dtype: storage of the first layer's table (``None``: as the file stores
            it; ``"float16"``, ``"float32"``); see :meth:`Embedder.load`.

    Raises:
        FileNotFoundError: no such file, folder, repo or revision (the message names it).
        ImportError: a Hub name, or a ``.safetensors`` file, without the ``hub`` extra
            (the message names it).
        luxical.errors.ModelFormatError: the file is damaged or not a Luxical model.
        ValueError: `revision` or `filename` given with a file path; an empty name.
    """
    if isinstance(model, Embedder):
        return model
    if isinstance(model, str) and not model:
        raise ValueError("cannot load model '': an empty name is neither a path nor a Hub repo id")
    from luxical import hub

    if isinstance(model, str) and hub.is_repo_id(model) and not os.path.exists(model):
        key: tuple[Any, ...] = ("hub", model, revision, filename, precision, mmap, first_layer_dtype)
        with _cache_lock:
            cached = _cache.get(key)
            if cached is None:
                try:
                    cached = Embedder.from_pretrained(
                        model, revision=revision, filename=filename, precision=precision, mmap=mmap,
                        first_layer_dtype=first_layer_dtype,
                    )
                except FileNotFoundError as exc:
                    raise FileNotFoundError(f"{exc} (there is no local file or folder '{model}' either)") from exc
                _cache[key] = cached
            return cached
    path = default_model_path() if model is None else Path(model)
    if path.is_dir():
        # A local snapshot folder: pick its model file (no Hub access), then load that file.
        path = hub._resolve(path, revision=revision, filename=filename, cache_dir=None, token=None,
                            local_files_only=True).path
    elif revision is not None or filename is not None:
        raise ValueError(
            f"revision= and filename= apply to Hugging Face Hub repos and model folders, not to '{path}'"
        )
    key = (str(path.resolve()), precision, mmap, first_layer_dtype)
    with _cache_lock:
        cached = _cache.get(key)
        if hub._layout(path) == "safetensors":
            # Its model file is a converted copy (or none): the .safetensors file's stat decides.
            stamp = _stamp(path)
            if cached is None or _stamps.get(key) != stamp:
                cached = hub.load_file(path, precision=precision, mmap=mmap, first_layer_dtype=first_layer_dtype)
                _cache[key] = cached
                _stamps[key] = stamp
        elif cached is None or (path.exists() and not cached._source_unchanged()):
            cached = _cache[key] = Embedder.load(
                path, precision=precision, mmap=mmap, first_layer_dtype=first_layer_dtype
            )
        return cached


def _stamp(path: Path) -> tuple[int, ...] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def embed(texts: Any, model: str | os.PathLike[str] | Embedder | None = None, **kwargs: Any) -> np.ndarray:
    """Embeds texts with `model` (default: the model shipped in the package).

    The model is loaded on first use and cached per process. Keyword arguments are
    those of :meth:`Embedder.__call__` (``batch_size``, ``num_threads``, ``progress``).

    Returns:
        float32 array of shape ``(len(texts), dim)`` with unit-norm (or all-zero) rows.
    """
    return load(model)(texts, **kwargs)
