"""`Embedder`: the user-facing model object."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from luxical import _inputs
from luxical._luxical import DEFAULT_MAX_TOKENS
from luxical._luxical import Model as _NativeModel
from luxical._luxical import __version__ as _native_version
from luxical._luxical import clear_weight_cache as _clear_weight_cache
from luxical._luxical import file_fingerprint as _file_fingerprint
from luxical.errors import LuxicalError, ModelFileChangedError

if TYPE_CHECKING:
    import scipy.sparse

    from luxical.heads import Head

__all__ = ["Embedder", "clear_weight_cache", "weight_cache_dir"]

_WRITER = f"luxical {_native_version}"


class Embedder:
    """A Luxical model: text → n-gram TF-IDF → small ReLU network → unit-norm embedding.

    Load one with :meth:`Embedder.load` (a reference-compatible ``.npz`` file) and call it
    on texts. Thread-safe: several Python threads may call one `Embedder` at once (the
    GIL is released during the work).

    Example:
        >>> emb = Embedder.load("model.npz")                      # doctest: +SKIP
        >>> vectors = emb(["a first document", "a second one"])   # (2, emb.dim) float32
    """

    def __init__(self, native: _NativeModel, *, source: str | os.PathLike[str] | None = None):
        """Wraps a native model. Prefer :meth:`load` or :meth:`from_bytes`."""
        self._native = native
        self._source = None if source is None else os.fspath(source)
        # What the model was read from, for users (see `source`); set by `from_pretrained`.
        self._origin: str | None = None
        # A model from the Hub: {"repo_id", "commit", "filename"}, so that a worker without
        # the file at `_source` can fetch it (see `_unpickle_by_path`).
        self._hub: dict[str, str] | None = None
        # A model converted from a .safetensors file: that file's absolute path.
        self._converted_from: str | None = None
        self._mmap = False
        # What the file at `_source` was when loaded (see `_source_unchanged`).
        self._source_stat: _FileStat | None = None
        self._checked_ns = 0
        # Set when the native model's own fingerprint is not the model's (unpickled by value).
        self._fingerprint: str | None = None
        # Heads applied in the embedding pass (see `with_heads`), and their native form.
        self._heads: tuple[Head, ...] = ()
        self._native_heads: Any = None

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        precision: str = "float32",
        mmap: bool | None = None,
        first_layer_dtype: str | None = None,
    ) -> Embedder:
        """Loads a model file (the reference Luxical ``.npz`` format, version 1).

        Args:
            path: Path of the ``.npz`` file.
            precision: ``"float32"`` (exact: matches the reference to float rounding),
                ``"int8"`` (hidden dense layers in int8 with exact integer sums: ~1.5-2x
                faster on short documents with large hidden layers on AVX2 CPUs, 3x and
                more with AVX-512 VNNI or AMX, cosine > 0.999 to float32) or
                ``"bfloat16"`` (hidden dense layers in bfloat16 with float32 sums: for CPUs
                with AMX-BF16 or AVX-512 BF16, elsewhere slower than float32); see the
                README's "Precision" section.
            mmap: memory-map the converted weights from a weight-cache file (written on
                first load into :func:`weight_cache_dir`), so that every process on the
                host shares one copy and later loads skip the conversion. ``None``
                (default): only for model files of 64 MB or more. A cache directory that
                cannot be written silently falls back to private memory.
            first_layer_dtype: storage of the first (vocabulary-sized) layer in memory;
                its sums are float32 either way. ``None`` (default): as the file stores it.
                ``"float16"``: half the memory and half the memory traffic of the
                first-layer gather (faster on long documents); on a file that stores
                float16 (``save(first_layer_dtype="float16")``, like the shipped model)
                the embeddings are bit-identical to float32, on others the weights are
                rounded to float16 (lowest row cosine to float32 >= 0.9999 on trained
                models, see the README's "Precision" section). ``"float32"``: widen.

        Returns:
            The loaded embedder.

        Raises:
            FileNotFoundError: `path` does not exist.
            luxical.errors.ModelFormatError: the file is damaged, inconsistent or not a
                Luxical model (the message says which array and why).
            luxical.errors.UnsupportedFormatVersionError: the file's format version is
                newer than this luxical.
        """
        path = Path(path)
        if mmap is None:
            mmap = path.is_file() and path.stat().st_size >= _AUTO_MMAP_BYTES
        cache = weight_cache_dir() if mmap else None
        # Before reading: a change after this stat is seen by the next check.
        checked_ns, file_stat = time.time_ns(), _stat(path)
        emb = cls(_NativeModel.load(path, cache, precision, first_layer_dtype), source=path.resolve())
        emb._mmap = bool(mmap)
        emb._source_stat, emb._checked_ns = file_stat, checked_ns
        return emb

    @classmethod
    def from_pretrained(
        cls,
        repo_id_or_dir: str | os.PathLike[str],
        *,
        revision: str | None = None,
        filename: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        precision: str = "float32",
        mmap: bool | None = None,
        first_layer_dtype: str | None = None,
    ) -> Embedder:
        """Loads a model from a Hugging Face Hub repo, or from a local folder laid out like one.

        A repo (or folder) may hold a reference ``.npz`` model file (``DatologyAI/luxical-one``
        publishes ``luxical_one_rc4.npz``) or the reference's Hugging Face export
        (``config.json`` + ``model.safetensors``, tensors ``embedder.*``); see
        :mod:`luxical.hub`. Without `filename`, the top-level ``.npz`` file is read (of
        several, the last in natural order, ``rc10`` after ``rc4``, with a logged
        warning), else ``model.safetensors``. The file read is logged (logger
        ``luxical.hub``) and kept in :attr:`source`.

        Hub access needs the optional extra (``pip install 'luxical[hub]'``:
        ``huggingface_hub``, ``safetensors``) and follows huggingface_hub's settings: its
        cache (``HF_HUB_CACHE``, ``HF_HOME``), ``HF_HUB_OFFLINE=1`` (cache only), the token
        of ``huggingface-cli login``. If the Hub cannot be reached, a cached snapshot of the
        revision is used. A local folder with a ``.npz`` needs neither package.

        A safetensors export is converted once to a ``.npz`` kept in the weight cache
        (:func:`weight_cache_dir`). The model pickles by path with its Hub origin (repo,
        commit, file): a worker without that file fetches the same commit's file through
        its own huggingface_hub cache (see :mod:`luxical.hub`).

        Args:
            repo_id_or_dir: A Hub model id ``owner/name``, or a local folder (an existing
                folder of that name wins over the Hub; a ``pathlib.Path`` is always local).
            revision: Branch, tag or commit hash on the Hub (default: ``main``); only for
                Hub repos.
            filename: The file to read, relative to the repo or folder (``.safetensors``:
                the export layout; anything else: ``.npz``).
            cache_dir: Hub cache folder (default: huggingface_hub's, ``HF_HUB_CACHE``).
            token: Hub token (default: huggingface_hub's, ``HF_TOKEN`` or the login).
            local_files_only: Read only the cache, never contact the Hub (as
                ``HF_HUB_OFFLINE=1``).
            precision: ``"float32"`` or ``"int8"``; see :meth:`load`.
            mmap: Weight-cache memory mapping; see :meth:`load`.
            first_layer_dtype: Storage of the first layer's table; see :meth:`load`.

        Returns:
            The loaded embedder; :attr:`source` says where from, e.g.
            ``hf://DatologyAI/luxical-one@<commit>/luxical_one_rc4.npz``.

        Raises:
            FileNotFoundError: no such repo, revision, file or folder, or (offline) the
                cache holds no snapshot of it; the message names the repo and revision.
            ImportError: a Hub repo or a safetensors file, and the ``hub`` extra is missing.
            luxical.errors.ModelFormatError: the file is damaged or not a Luxical model.
            ValueError: `revision` given for a local folder, or an invalid repo id.

        Example:
            >>> emb = Embedder.from_pretrained("DatologyAI/luxical-one")   # doctest: +SKIP
            >>> emb.source                                                  # doctest: +SKIP
            'hf://DatologyAI/luxical-one@.../luxical_one_rc4.npz'
        """
        from luxical import hub  # also serves it as luxical.hub.from_pretrained

        resolved = hub._resolve(
            repo_id_or_dir, revision=revision, filename=filename, cache_dir=cache_dir, token=token,
            local_files_only=local_files_only,
        )
        return hub._load_resolved(resolved, precision=precision, mmap=mmap, first_layer_dtype=first_layer_dtype)

    @classmethod
    def from_bytes(cls, data: bytes) -> Embedder:
        """Loads a model from the bytes of a model file (see :meth:`to_bytes`)."""
        return cls(_NativeModel.from_bytes(bytes(data)))

    @classmethod
    def from_arrays(
        cls,
        *,
        tokenizer_json: str,
        ngrams: np.ndarray,
        idf: np.ndarray,
        layers: list[np.ndarray],
    ) -> Embedder:
        """Builds a model from its arrays (how training exports a model).

        Args:
            tokenizer_json: Text of a Hugging Face ``tokenizer.json`` (truncation and
                padding are switched off).
            ngrams: Recognized n-grams, integer ``(vocab_size, max_ngram_len)``, each row
                the token ids of one n-gram right-padded with ``2**32 - 1``. Row i is
                feature i.
            idf: IDF weight per n-gram, ``(vocab_size,)``.
            layers: Network weights, each ``(out_dim, in_dim)``; the first takes
                ``vocab_size`` inputs and each next one takes the previous output.

        Raises:
            luxical.errors.ModelFormatError: the arrays are inconsistent.
        """
        ngrams = np.asarray(ngrams)
        if ngrams.ndim != 2:
            raise ValueError(f"ngrams must be 2-dimensional, got shape {ngrams.shape}")
        if ngrams.size and (ngrams.min() < 0 or ngrams.max() > np.iinfo(np.uint32).max):
            raise ValueError("ngrams must hold token ids in the uint32 range")
        native_layers = []
        for i, w in enumerate(layers):
            w = np.asarray(w, dtype=np.float32)
            if w.ndim != 2:
                raise ValueError(f"layers[{i}] must be 2-dimensional (out, in), got shape {w.shape}")
            native_layers.append((w.shape[0], w.shape[1], np.ascontiguousarray(w).ravel()))
        native = _NativeModel.from_parts(
            tokenizer_json,
            np.ascontiguousarray(ngrams, dtype=np.uint32).ravel(),
            ngrams.shape[1],
            np.ascontiguousarray(idf, dtype=np.float32),
            native_layers,
        )
        return cls(native)

    def to_bytes(self) -> bytes:
        """The model file's bytes (reference-compatible ``.npz``)."""
        return self._native.to_bytes(_WRITER)

    def save(self, path: str | os.PathLike[str], *, first_layer_dtype: str = "float32") -> None:
        """Writes the model to `path` as a ``.npz`` (atomically).

        Args:
            path: Destination file.
            first_layer_dtype: ``"float32"`` (default): the file loads in the reference
                ``luxical`` package as well as in this one. ``"float16"``: the first
                (vocabulary-sized) layer is stored in half precision, halving the file;
                luxical keeps it in float16 in memory too (bit-identical embeddings, see
                :meth:`load`), the reference cannot read it.
        """
        if first_layer_dtype not in ("float32", "float16"):
            raise ValueError(f'first_layer_dtype must be "float32" or "float16", got {first_layer_dtype!r}')
        self._native.save(Path(path), _WRITER, first_layer_dtype == "float16")

    def __getstate__(self) -> dict[str, Any]:
        # Small pickles: by path (with the model's fingerprint, checked on unpickling) when
        # loaded from a file that still holds this model; else by bytes, so that the
        # receiver gets this model even if the file has been replaced since it was loaded.
        # A model from the Hub also carries its origin (repo, commit, file: immutable), which
        # a receiver without the file fetches; it is pickled by reference even when its file
        # is gone here (a cleared cache). Heads travel by value (their files' bytes, checked
        # again on unpickling).
        heads = [h.to_bytes() for h in self._heads]
        if self._source is not None and (
            self._source_unchanged() or (self._hub is not None and not os.path.lexists(self._source))
        ):
            return {
                "path": self._source,
                "precision": self.precision,
                "first_layer_dtype": self.first_layer_dtype,
                "mmap": self._mmap,
                "fingerprint": self.fingerprint,
                "heads": heads,
                "origin": self._origin,
                "hub": self._hub,
                "converted_from": self._converted_from,
            }
        # (A model built in memory has no fingerprint yet: that of these bytes is its own.)
        fingerprint = self._fingerprint or self._native.fingerprint
        return {
            "bytes": self.to_bytes(),
            "precision": self.precision,
            "first_layer_dtype": self.first_layer_dtype,
            "fingerprint": fingerprint,
            "heads": heads,
            "origin": self._origin,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._source_stat, self._checked_ns, self._fingerprint = None, 0, None
        self._heads, self._native_heads = (), None
        self._origin = state.get("origin")
        self._hub, self._converted_from = state.get("hub"), state.get("converted_from")
        self._restore_model(state)
        if state.get("heads"):
            from luxical import heads as _heads_mod

            self._set_heads([_heads_mod.from_bytes(b) for b in state["heads"]])

    def _restore_model(self, state: dict[str, Any]) -> None:
        want = state.get("fingerprint")
        if "path" in state:
            loaded = _unpickle_by_path(state)
            self._native = loaded._native
            self._source = loaded._source
            self._mmap = bool(state.get("mmap"))
            self._source_stat, self._checked_ns = loaded._source_stat, loaded._checked_ns
            # Where this host found it (its own Hub cache, its own conversion).
            self._converted_from = loaded._converted_from or self._converted_from
        else:
            self._native = _NativeModel.from_bytes(state["bytes"])
            self._source = None
            self._mmap = False
            self._fingerprint = want
            if state.get("precision", "float32") != "float32":
                self._native = self._native.with_precision(state["precision"])
            table = state.get("first_layer_dtype")
            if table is not None and table != self._native.first_layer_dtype:
                self._native = self._native.with_first_layer_dtype(table)

    @property
    def fingerprint(self) -> str:
        """The model's identity: 16 hex digits from the name, CRC-32 and size of every array
        of its model file (read from the file's zip directory, no pass over the weights).
        Equal files have equal fingerprints wherever they are; a changed array changes it.
        A model built in memory has the fingerprint of :meth:`to_bytes`; one pickled by
        value keeps that of the file it was loaded from."""
        if self._fingerprint is None:
            native = self._native.fingerprint
            self._fingerprint = native if native is not None else _NativeModel.from_bytes(self.to_bytes()).fingerprint
        assert self._fingerprint is not None
        return self._fingerprint

    def _source_unchanged(self) -> bool:
        """Whether the file at `_source` still holds this model.

        Cheap when the file's (device, inode, size, mtime, ctime) are those seen when it was
        loaded and its ctime was then over `_RACY_NS` old (a later change would have a later
        ctime); otherwise the file's fingerprint decides (its zip directory is read).
        """
        assert self._source is not None
        checked_ns, now = time.time_ns(), _stat(self._source)
        if now is None:
            return False
        if now == self._source_stat and now[4] < self._checked_ns - _RACY_NS:
            return True
        try:
            same = _file_fingerprint(self._source) == self.fingerprint
        except (OSError, LuxicalError):
            return False
        if same:
            self._source_stat, self._checked_ns = now, checked_ns
        return same

    def __repr__(self) -> str:
        dims = " → ".join(str(d) for d in self.layer_dims)
        extra = "" if self.precision == "float32" else f", precision={self.precision!r}"
        if self._heads:
            extra += f", heads=[{', '.join(h.name for h in self._heads)}]"
        if self.source is not None:
            extra += f", source={self.source!r}"
        return f"Embedder({dims}, max_ngram_len={self.max_ngram_len}{extra})"

    @property
    def source(self) -> str | None:
        """Where the model was read from: for :meth:`from_pretrained` from the Hub,
        ``hf://owner/name@<commit>/<file>``; for a local folder, the path of the file read
        in it; for :meth:`load`, the file's absolute path; None for a model built in
        memory (:meth:`from_bytes`, :meth:`from_arrays`)."""
        return self._origin if self._origin is not None else self._source

    @property
    def precision(self) -> str:
        """Arithmetic of the dense layers: ``"float32"`` (exact) or ``"int8"``."""
        return self._native.precision

    def with_first_layer_dtype(self, first_layer_dtype: str) -> Embedder:
        """This model with its first layer's table held as `first_layer_dtype`
        (``"float32"`` or ``"float16"``, see :meth:`load`); the table is converted into
        private memory (to keep it shared, load with ``first_layer_dtype=`` instead). Heads
        are kept."""
        if first_layer_dtype == self.first_layer_dtype:
            return self
        return self._copy(self._native.with_first_layer_dtype(first_layer_dtype))

    @property
    def first_layer_dtype(self) -> str:
        """Storage of the first layer's table in memory: ``"float32"`` or ``"float16"``."""
        return self._native.first_layer_dtype

    @property
    def weights_mapped(self) -> bool:
        """Whether the weights are memory-mapped from a weight-cache file (shared by every
        process on the host that loads the same model)."""
        return self._native.weights_mapped

    def with_precision(self, precision: str) -> Embedder:
        """A copy of this model computing its dense layers in `precision` (``"float32"``,
        ``"int8"`` or ``"bfloat16"``); the big first layer is shared, not copied."""
        return self._copy(self._native.with_precision(precision))

    def _copy(self, native: _NativeModel) -> Embedder:
        emb = Embedder(native, source=self._source)
        emb._origin, emb._hub, emb._converted_from = self._origin, self._hub, self._converted_from
        emb._mmap = self._mmap
        emb._source_stat, emb._checked_ns, emb._fingerprint = self._source_stat, self._checked_ns, self._fingerprint
        emb._heads, emb._native_heads = self._heads, self._native_heads
        return emb

    def with_heads(self, *heads: Head | str | os.PathLike[str]) -> Embedder:
        """A copy of this model that also computes `heads` in the embedding pass.

        Each head (a :class:`luxical.heads.Head`, or the path of a head file) is applied
        by the runtime to every document's embedding right after it is computed, at
        every precision. Calling the returned embedder gives a
        :class:`luxical.heads.Embedded`: ``.embeddings`` (None with
        ``embeddings=False``) and ``.columns`` (``{column name: array}``; see
        :attr:`luxical.heads.Head.columns`). ``with_heads()`` without heads gives the
        plain model back. The model's weights are shared, not copied.

        Example:
            >>> scored = emb.with_heads("quality.npz", "domains.npz")   # doctest: +SKIP
            >>> out = scored(texts, embeddings=False)                   # doctest: +SKIP
            >>> out["quality_good"], out["domains_id"]                  # doctest: +SKIP

        Raises:
            luxical.errors.HeadFormatError: a head file is damaged or invalid (names it).
            ValueError: a head reads embeddings of another dimension than this model's
                (names the head and its file), or two heads write the same column.
        """
        from luxical import heads as _heads_mod

        resolved = _heads_mod.resolve(heads)
        emb = self._copy(self._native)
        emb._set_heads(resolved)
        return emb

    def _set_heads(self, heads: list[Head]) -> None:
        from luxical import heads as _heads_mod

        for h in heads:
            if h.dim != self.dim:
                raise ValueError(
                    f"{h._described()} reads {h.dim}-dimensional embeddings but this model makes "
                    f"{self.dim}-dimensional ones; fit the head on this model's embeddings"
                )
        self._heads = tuple(heads)
        self._native_heads = _heads_mod.native_heads(heads) if heads else None

    @property
    def heads(self) -> tuple[Head, ...]:
        """The heads computed in the embedding pass (see :meth:`with_heads`)."""
        return self._heads

    @property
    def head_columns(self) -> list[str]:
        """Names of the heads' output columns, in order."""
        return [c for h in self._heads for c in h.columns]

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Output embedding dimension."""
        return self._native.dim

    @property
    def vocab_size(self) -> int:
        """Number of recognized n-grams (input features)."""
        return self._native.vocab_size

    @property
    def max_ngram_len(self) -> int:
        """Longest n-gram length (N of the 1..N-grams)."""
        return self._native.max_ngram_len

    @property
    def layer_dims(self) -> list[int]:
        """``[vocab_size, hidden_1, ..., dim]``."""
        return list(self._native.layer_dims)

    @property
    def tokenizer_json(self) -> str:
        """The Hugging Face ``tokenizer.json`` the model tokenizes with."""
        return self._native.tokenizer_json

    @property
    def ngrams(self) -> np.ndarray:
        """Recognized n-grams, uint32 ``(vocab_size, max_ngram_len)``, padded with 2**32-1."""
        return self._native.ngrams().reshape(self.vocab_size, self.max_ngram_len)

    @property
    def idf(self) -> np.ndarray:
        """IDF weight of each n-gram, float32 ``(vocab_size,)``."""
        return self._native.idf()

    @property
    def layers(self) -> list[np.ndarray]:
        """Network weights, each float32 ``(out_dim, in_dim)`` (copies)."""
        return [w.reshape(o, i) for o, i, w in self._native.layers()]

    # ------------------------------------------------------------------ embedding
    def __call__(
        self,
        texts: Any,
        *,
        batch_size: int = 4096,
        num_threads: int | None = None,
        progress: bool = False,
        out: np.ndarray | None = None,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
        embeddings: bool = True,
    ) -> Any:
        """Embeds texts (and, for an embedder made by :meth:`with_heads`, applies its heads).

        Args:
            texts: list/tuple of str, numpy str/object array, pandas Series, or pyarrow
                StringArray / LargeStringArray / ChunkedArray (read zero-copy).
            batch_size: Texts per native call; progress is reported and Ctrl-C is
                honoured between batches. Results do not depend on it.
            num_threads: Threads to use. Default: ``LUXICAL_NUM_THREADS``, else
                ``RAYON_NUM_THREADS`` (each: a positive integer; ``0``, empty or
                anything else means not set, as in rayon), else all cores. At most 4 per
                available core (at least 8) are used; a larger count is capped with a
                :class:`luxical.errors.LuxicalWarning`. Inside Spark use
                ``spark.task.cpus``. Results do not depend on it.
            progress: Show a tqdm progress bar (needs ``tqdm``).
            out: Optional preallocated C-contiguous float32 array of shape (n, dim) to
                write into.
            max_tokens: Each document is embedded from its first `max_tokens` tokens
                (default 2**20, ~4 MB of English): time and memory per document stay
                bounded, even for a 100 MB document, which is tokenized window by window
                and only as far as needed. None embeds every token (memory then grows
                with the longest document). The reference Luxical has no limit; outputs
                differ only for documents longer than the limit.
            embeddings: With heads only: False computes the embeddings batch by batch
                into one reused buffer and returns only the head columns.

        Returns:
            float32 array of shape ``(len(texts), dim)``; each row has unit L2 norm, or is
            all zeros when the text has no recognized n-gram (empty, whitespace, unknown
            script). With heads: a :class:`luxical.heads.Embedded` holding that array
            (None when ``embeddings=False``) and the heads' columns.

        Raises:
            TypeError: an item is not a str (the message names its index), or `texts` is
                a single string.
            ValueError: an item is not valid Unicode (lone surrogate), or bad arguments.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        _check_max_tokens(max_tokens)
        heads = self._native_heads
        if not embeddings and heads is None:
            raise ValueError("embeddings=False needs heads (see Embedder.with_heads): there would be nothing to return")
        if not embeddings and out is not None:
            raise ValueError("out= and embeddings=False exclude each other")
        prepared = _inputs.prepare_texts(texts)
        n = _inputs.count(prepared)
        if out is None and embeddings:
            out = np.empty((n, self.dim), dtype=np.float32)
        elif out is not None and (
            out.shape != (n, self.dim) or out.dtype != np.float32 or not out.flags.c_contiguous
        ):
            raise ValueError(
                f"out must be a C-contiguous float32 array of shape ({n}, {self.dim}), "
                f"got {out.dtype} {out.shape}"
            )
        # Without embeddings: one batch-sized buffer, reused.
        scratch = None if embeddings else np.empty((min(batch_size, n), self.dim), dtype=np.float32)
        # One row per head column (float32, filled batch by batch): the columns returned.
        head_out = None if heads is None else np.empty((heads.n_outputs, n), dtype=np.float32)
        bar = _progress_bar(n, progress)
        try:
            for start in range(0, n, batch_size):
                end = min(start + batch_size, n)
                batch = _inputs.slice_prepared(prepared, start, end)
                target = out[start:end] if out is not None else scratch[: end - start]  # type: ignore[index]
                try:
                    if isinstance(batch, list):
                        self._native.embed(batch, target, num_threads, max_tokens, heads, head_out, start)
                    else:
                        self._native.embed_utf8(
                            batch[0], batch[1], target, num_threads, max_tokens, heads, head_out, start
                        )
                except (TypeError, ValueError) as exc:
                    raise _reindex(exc, start) from None
                if bar is not None:
                    bar.update(end - start)
        finally:
            if bar is not None:
                bar.close()
        if head_out is None:
            return out
        from luxical import heads as _heads_mod

        return _heads_mod.Embedded(out, _heads_mod.columns_from_native(self._heads, head_out))

    def encode(
        self,
        sentences: Any,
        *,
        batch_size: int = 4096,
        show_progress_bar: bool = False,
        normalize_embeddings: bool = True,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        num_threads: int | None = None,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
        **unused: Any,
    ) -> Any:
        """sentence-transformers-style alias of :meth:`__call__`.

        Accepts the keywords users already type. Embeddings are always unit-norm, so
        `normalize_embeddings` only accepts True. A single str returns one vector.

        Returns:
            numpy array (default), or a torch tensor with ``convert_to_tensor=True``.
        """
        if not normalize_embeddings:
            raise ValueError("Luxical embeddings are always L2-normalised; normalize_embeddings=False is not supported")
        if unused:
            raise TypeError(f"encode() got unexpected keyword arguments: {sorted(unused)}")
        single = isinstance(sentences, str)
        plain = self.with_heads() if self._heads else self
        emb = plain(
            [sentences] if single else sentences,
            batch_size=batch_size,
            num_threads=num_threads,
            progress=show_progress_bar,
            max_tokens=max_tokens,
        )
        if single:
            emb = emb[0]
        if convert_to_tensor or not convert_to_numpy:
            import torch

            return torch.from_numpy(emb)
        return emb

    # ------------------------------------------------------------------ stages
    def tokenize(
        self, texts: Any, *, num_threads: int | None = None, max_tokens: int | None = DEFAULT_MAX_TOKENS
    ) -> list[np.ndarray]:
        """Token ids of each text (uint32, no special tokens; the first `max_tokens` of
        them, see :meth:`__call__`; the tokenizer's own truncation is always off)."""
        _check_max_tokens(max_tokens)
        texts = _as_list(texts)
        ids, offsets = self._native.tokenize(texts, num_threads, max_tokens)
        return [ids[offsets[i] : offsets[i + 1]] for i in range(len(texts))]

    def tfidf(
        self, texts: Any, *, num_threads: int | None = None, max_tokens: int | None = DEFAULT_MAX_TOKENS
    ) -> scipy.sparse.csr_matrix:
        """L2-normalised TF-IDF features, a ``(len(texts), vocab_size)`` float32 CSR matrix.

        Needs scipy. Within a row, columns are in first-occurrence order (as the
        reference); call ``.sort_indices()`` if you need them sorted.
        """
        import scipy.sparse

        _check_max_tokens(max_tokens)
        texts = _as_list(texts)
        indptr, indices, data = self._native.tfidf(texts, num_threads, max_tokens)
        return scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(texts), self.vocab_size))


_AUTO_MMAP_BYTES = 64 << 20

#: A file whose ctime is closer than this to when it was checked may change again within
#: the same timestamp tick (ext4: ~4 ms; FAT: 2 s): its stat alone proves nothing.
_RACY_NS = 2_000_000_000

#: (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)
_FileStat = tuple[int, int, int, int, int]


def _stat(path: str | os.PathLike[str]) -> _FileStat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def weight_cache_dir() -> Path:
    """Directory of weight-cache files: ``$LUXICAL_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/luxical/weights``, else ``~/.cache/luxical/weights``.

    It holds the converted weights of ``mmap=True`` loads (``<key>.lxw``) and the ``.npz``
    files converted from safetensors exports (``<sha256>.st1.npz``, see
    :mod:`luxical.hub`). Files there are derived data, rebuilt on the next load, and mapped
    or read by every process that uses them: remove them with :func:`clear_weight_cache`
    (or ``rm``, which also unlinks), never truncate or rewrite one in place (every process
    mapping it would die of SIGBUS). They are created read-only.
    """
    env = os.environ.get("LUXICAL_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "luxical" / "weights"


def clear_weight_cache(path: str | os.PathLike[str] | None = None) -> int:
    """Removes the weight-cache files: those made by ``mmap=True`` loads, and the ``.npz``
    files converted from safetensors exports.

    Safe while other processes use the cache: files are unlinked, not truncated, so a
    process that maps one keeps its copy until it exits; an entry being written is removed
    once it is complete; the next load rebuilds what it needs. Other files in the
    directory are left alone. A model whose converted file was removed pickles by value
    (or, from the Hub, by its repo, commit and file name).

    Args:
        path: The cache directory; default :func:`weight_cache_dir`.

    Returns:
        The number of cache files removed (0 if the directory does not exist).

    Raises:
        OSError: a file could not be removed.
    """
    directory = Path(path) if path is not None else weight_cache_dir()
    from luxical import hub

    return _clear_weight_cache(directory) + hub.clear_converted(directory)


def _unpickle_by_path(state: dict[str, Any]) -> Embedder:
    """The model an Embedder pickled by path names, loaded here, with its fingerprint
    checked. Tried in order: the file at the pickled path; for a model from the Hub, the
    same repo, commit and file through huggingface_hub (its cache, or a download unless
    ``HF_HUB_OFFLINE`` is set); for a model converted from a ``.safetensors`` file, that
    file. Each goes through the per-process cache (`luxical.load`): a worker that unpickles
    the same Embedder for every task (Spark, Dask, Ray, multiprocessing) loads it once.

    Raises:
        ModelFileChangedError: what was found holds another model.
        FileNotFoundError: none of them is available here (names the path, and the repo,
            commit and file).
    """
    from luxical import load

    path, want = state["path"], state.get("fingerprint")
    precision, mmap = state.get("precision", "float32"), state.get("mmap")
    table = state.get("first_layer_dtype")  # None in pickles of older versions: as stored
    hub, converted_from = state.get("hub"), state.get("converted_from")
    fallback = hub is not None or converted_from is not None
    what = f"the Embedder of {state['origin']}" if state.get("origin") else "the Embedder"
    found: list[str] = []  # why each place did not do
    changed = False

    def matches(loaded: Embedder, where: str) -> bool:
        nonlocal changed
        if want is None or loaded.fingerprint == want:
            return True
        changed = True
        found.append(f"{where} holds model {loaded.fingerprint}")
        return False

    if os.path.lexists(path) or not fallback:
        try:
            loaded = load(path, precision=precision, mmap=mmap, first_layer_dtype=table)
        except (LuxicalError, OSError) as exc:
            if not fallback:
                raise
            found.append(f"its file '{path}' cannot be read here ({exc})")
        else:
            if matches(loaded, f"the model file '{path}'"):
                return loaded
            if not fallback:
                raise ModelFileChangedError(
                    f"cannot unpickle {what}: the model file '{path}' holds model "
                    f"{loaded.fingerprint} here, but the pickled Embedder was loaded from model {want} "
                    "(the file was replaced after pickling, or differs on this host); put the same "
                    "file at this path everywhere, or send the model by value: "
                    "Embedder.from_bytes(emb.to_bytes())"
                )
    else:
        found.append(f"its file '{path}' does not exist here")
    if hub is not None:
        repo_id, commit, filename = hub["repo_id"], hub["commit"], hub["filename"]
        named = f"Hugging Face Hub repo '{repo_id}' at commit '{commit}', file '{filename}'"
        try:
            loaded = load(
                repo_id, revision=commit, filename=filename, precision=precision, mmap=mmap, first_layer_dtype=table
            )
        except (LuxicalError, OSError, ImportError, ValueError) as exc:
            found.append(f"huggingface_hub cannot provide {named}: {exc}")
        else:
            if matches(loaded, named):
                return loaded
    elif converted_from is not None:
        try:
            loaded = load(converted_from, precision=precision, mmap=mmap, first_layer_dtype=table)
        except (LuxicalError, OSError, ImportError) as exc:
            found.append(f"its safetensors file '{converted_from}' cannot be read here ({exc})")
        else:
            if matches(loaded, f"the safetensors file '{converted_from}'"):
                return loaded
    message = f"cannot unpickle {what} (model {want}): " + "; ".join(found)
    if changed:
        raise ModelFileChangedError(message + "; put the same model file everywhere, or send the model by value: "
                                    "Embedder.from_bytes(emb.to_bytes())")
    raise FileNotFoundError(message)


def _check_max_tokens(max_tokens: int | None) -> None:
    if max_tokens is not None and (not isinstance(max_tokens, (int, np.integer)) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive int or None, got {max_tokens!r}")


def _as_list(texts: Any) -> list:
    prepared = _inputs.prepare_texts(texts)
    if isinstance(prepared, list):
        return prepared
    data, offsets = prepared
    raw = data.tobytes()
    return [raw[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(len(offsets) - 1)]


def _reindex(exc: Exception, start: int) -> Exception:
    """Rewrites 'texts[i]' in a batch-level message to the index in the caller's input."""
    if start == 0:
        return exc
    import re

    message = re.sub(r"texts\[(\d+)\]", lambda m: f"texts[{int(m.group(1)) + start}]", str(exc), count=1)
    return type(exc)(message)


_tqdm_lock = threading.Lock()


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    with _tqdm_lock:
        from tqdm.auto import tqdm

    return tqdm(total=total, desc="Embedding", unit="doc", unit_scale=True)
