"""Models by name: Hugging Face Hub repositories and local snapshot folders.

    >>> import luxical
    >>> emb = luxical.load("DatologyAI/luxical-one")                        # doctest: +SKIP
    >>> emb = luxical.Embedder.from_pretrained("DatologyAI/luxical-one", revision="main")  # doctest: +SKIP
    >>> emb.source                                                          # doctest: +SKIP
    'hf://DatologyAI/luxical-one@<commit>/luxical_one_rc4.npz'

A repository (or a folder laid out like one) may hold a model in either of two layouts:

- a reference ``.npz`` model file (how ``DatologyAI/luxical-one`` publishes
  ``luxical_one_rc4.npz``), read natively like :meth:`luxical.Embedder.load`;
- the reference's Hugging Face export (``projects/huggingface_integration/luxical_hf_wrapper.py``
  in github.com/datologyai/luxical): ``config.json`` (``model_type`` ``"luxical-one"``) and
  ``model.safetensors`` holding the same arrays as ``embedder.version`` (int64 ``[1]``),
  ``embedder.tokenizer`` (uint8, the UTF-8 bytes of ``tokenizer.json``),
  ``embedder.recognized_ngrams`` (int64 token ids, padded with ``2**32 - 1``),
  ``embedder.ngram_keys`` / ``embedder.ngram_vals`` (int64, the n-gram hash → index map),
  ``embedder.idf_values`` (float32), ``embedder.num_layers`` (int64 ``[1]``) and
  ``embedder.nn_layer_{i}`` (float32, ``(out, in)``). It is read with the ``safetensors``
  package's numpy API (never pickle) and converted to a ``.npz`` file, which gets exactly
  the checks of any ``.npz`` file and is kept (see below).

The ``.npz`` converted from a safetensors file is kept in the weight cache,
``luxical.weight_cache_dir()/<sha256>.st1.npz``, named by the SHA-256 of the safetensors
file (for a Hub file, the name huggingface_hub gives its blob, which is that hash; else
the file is hashed) and by the conversion's version (``st1``). It is written once
(under a lock, to a temporary name, read-only, renamed into place), reused by later loads
(on this host, by every process), and checked on each load like any model file: a damaged
one is logged, removed and converted again. The model then has a real file, so it pickles
by path like a ``.npz`` model. :func:`luxical.clear_weight_cache` removes these files too
(derived data: the next load converts again). Where the weight cache cannot be written,
the conversion goes to a temporary file that is deleted at once, and the model pickles
by value.

A model loaded from the Hub remembers its origin (repo id, commit, file name), and its
pickle carries it along with the path and the model's fingerprint. Unpickling (on a
Spark/Dask/Ray worker) uses the path when that file exists there and holds the same
model; else it fetches the same commit's file through huggingface_hub (its cache first;
``HF_HUB_OFFLINE=1`` honoured) and checks the fingerprint; else it fails naming the repo,
commit and file. A model read from a local ``.safetensors`` file falls back the same way
to converting that file again, where it exists.

Which file of a snapshot is read (:func:`choose_model_file`): the ``filename=`` argument if
given; else the snapshot's top-level ``.npz`` file (of several, the last in natural order,
so ``rc10`` after ``rc4``, with a logged warning naming the others); else
``model.safetensors``. The file read is logged (logger ``luxical.hub``, level INFO) and
kept as :attr:`luxical.Embedder.source`.

Hub access goes through ``huggingface_hub`` (the optional extra: ``pip install
'luxical[hub]'``) and follows its settings: the cache (``HF_HUB_CACHE``, ``HF_HOME``,
``cache_dir=``), ``HF_HUB_OFFLINE=1`` (only the cache is read), ``HF_TOKEN`` or
``huggingface-cli login``. When the Hub cannot be reached, a cached snapshot of the revision
is used. Local folders need neither package unless they hold a safetensors export.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from luxical.embedder import Embedder
from luxical.errors import ModelFormatError

__all__ = ["SAFETENSORS_FILE", "choose_model_file", "converted_path", "from_pretrained", "is_repo_id", "load_file"]

logger = logging.getLogger("luxical.hub")

#: File name of the reference's Hugging Face export (transformers' ``SAFE_WEIGHTS_NAME``).
SAFETENSORS_FILE = "model.safetensors"
#: ``model_type`` that the reference's export writes into ``config.json``.
_MODEL_TYPE = "luxical-one"
#: The reference wrapper's tensor names (``_embedder_to_state_dict``) → the ``.npz`` array
#: names of format version 1 (``Embedder.save`` in the reference; rust ``format.rs``).
_TENSOR_TO_NPZ = {
    "embedder.version": "version",
    "embedder.tokenizer": "tokenizer",
    "embedder.recognized_ngrams": "recognized_ngrams",
    "embedder.ngram_keys": "ngram_hash_to_ngram_idx_keys",
    "embedder.ngram_vals": "ngram_hash_to_ngram_idx_values",
    "embedder.idf_values": "idf_values",
    "embedder.num_layers": "num_nn_layers",
}
_LAYER_TENSOR = "embedder.nn_layer_{}"
#: As many layers as the native reader accepts (``MAX_LAYERS`` in rust ``format.rs``).
_MAX_LAYERS = 1024
#: Token-id padding of format v1 (the wrapper widens the uint32 ids, padding included, to int64).
_PAD_U32 = 2**32 - 1
#: What a Hub snapshot is searched for when no ``filename=`` is given.
_PATTERNS = ["*.npz", SAFETENSORS_FILE, "config.json"]
_EXTRA = "pip install 'luxical[hub]'"
# owner/name: one slash, each part starting with a letter or digit (the Hub's own rules are
# checked by huggingface_hub). A name ending like a model file is a path, never a repo.
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_FILE_SUFFIXES = (".npz", ".safetensors")
#: Version of the safetensors → .npz conversion, part of a converted file's name: a luxical
#: that converts differently never reuses an older conversion.
_CONVERSION = "st1"
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Names of the conversion's files in the weight cache: `<sha256>.st1.npz` (the model),
# `<sha256>.st1.lock` (held while it is written), `.<sha256>.st1.<pid>.<hex>.partial` (being
# written). The native weight cache's own names have 16-hex keys: neither reads the other's.
_CONVERTED_FILE = re.compile(rf"(?P<sha>[0-9a-f]{{64}})\.{_CONVERSION}\.(?P<kind>npz|lock)")
_CONVERTED_PARTIAL = re.compile(rf"\.(?P<sha>[0-9a-f]{{64}})\.{_CONVERSION}\.\d+\.[0-9a-f]+\.partial")
#: A zip entry's time for converted files: fixed, so that one safetensors file always
#: converts to the same bytes (1980-01-01, the earliest a zip directory can hold).
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def is_repo_id(name: str) -> bool:
    """Whether `name` has the shape of a Hugging Face Hub model id, ``owner/name``.

    Exactly one ``/``; each part made of letters, digits, ``-``, ``_`` and ``.``, starting
    with a letter or digit; not ending in ``.npz`` or ``.safetensors`` (those are file
    paths). :func:`luxical.load` takes such a string for a Hub repo only when no file or
    folder of that name exists.
    """
    return bool(_REPO_ID.fullmatch(name)) and not name.lower().endswith(_FILE_SUFFIXES)


def choose_model_file(names: list[str], *, where: str) -> str:
    """Picks the model file among the top-level file names of a snapshot.

    The rule: the ``.npz`` file if there is one (it is read natively: memory-mapped weight
    cache, pickled by path); of several, the last in natural order (digit runs compared as
    numbers: ``luxical_one_rc10.npz`` after ``luxical_one_rc4.npz``), with a logged warning
    naming the others (pass ``filename=`` to choose); else ``model.safetensors`` (the
    reference's Hugging Face export).

    Args:
        names: File names at the top level of the snapshot.
        where: The snapshot, for messages (a repo id or a folder).

    Returns:
        The chosen name.

    Raises:
        FileNotFoundError: no candidate (the message lists the files found).
    """
    npz = sorted((n for n in names if n.lower().endswith(".npz")), key=_natural_key)
    if npz:
        if len(npz) > 1:
            logger.warning(
                "%s holds %d .npz model files; reading %r (the last in natural order), not %s; "
                "pass filename= to choose another",
                where, len(npz), npz[-1], ", ".join(repr(n) for n in npz[:-1]),
            )
        return npz[-1]
    if SAFETENSORS_FILE in names:
        return SAFETENSORS_FILE
    found = ", ".join(repr(n) for n in sorted(names)) or "no files"
    raise FileNotFoundError(
        f"{where} holds no Luxical model: expected a .npz model file or '{SAFETENSORS_FILE}' "
        f"(the reference's Hugging Face export) at its top level, found {found}; "
        "pass filename= to name the file"
    )


#: Loads a model from a Hugging Face Hub repo or a local folder laid out like one: this is
#: :meth:`luxical.Embedder.from_pretrained` itself, which documents the arguments.
from_pretrained = Embedder.from_pretrained


def _load_resolved(
    resolved: _Resolved, *, precision: str, mmap: bool | None, first_layer_dtype: str | None = None
) -> Embedder:
    """The model of a repo or folder that :func:`_resolve` found (the body of
    :meth:`luxical.Embedder.from_pretrained`): loaded, with its origin kept for pickling."""
    emb = load_file(
        resolved.path, precision=precision, mmap=mmap, first_layer_dtype=first_layer_dtype, described=resolved.source
    )
    emb._origin = resolved.source
    emb._hub = resolved.hub
    logger.info("luxical: loaded %s (%s layout)", resolved.source, _layout(resolved.path))
    return emb


# ---------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class _Resolved:
    path: Path  # the file to read (in a Hub cache: the snapshot's link to its blob)
    source: str  # what it is, for users: hf://owner/name@commit/file, or the local path
    hub: dict[str, str] | None = None  # a Hub file: {"repo_id", "commit", "filename"}


def _resolve(
    target: str | os.PathLike[str],
    *,
    revision: str | None,
    filename: str | None,
    cache_dir: str | os.PathLike[str] | None,
    token: str | bool | None,
    local_files_only: bool,
) -> _Resolved:
    """The model file that `target` names: a local file or folder (an existing path wins),
    else a file of the Hub repo `target` (downloaded into the Hub cache, or found there)."""
    if not isinstance(target, os.PathLike) and not str(target):
        raise ValueError("cannot load model '': an empty name is neither a path nor a Hub repo id")
    if isinstance(target, os.PathLike) or Path(target).exists():
        return _resolve_local(Path(target), revision=revision, filename=filename)
    repo_id = str(target)
    if not is_repo_id(repo_id):
        raise FileNotFoundError(
            f"cannot load model '{repo_id}': no such file or folder, and it is not a Hugging Face Hub "
            "repo id (owner/name)"
        )
    hf = _import_hub(repo_id)
    from huggingface_hub.utils import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = local_files_only or bool(hf.constants.HF_HUB_OFFLINE)
    at = f"'{repo_id}'" + (f" (revision '{revision}')" if revision is not None else "")
    unreachable = ("local_files_only=True" if local_files_only else "HF_HUB_OFFLINE is set") if offline else (
        "the Hugging Face Hub could not be reached"
    )
    cache = str(cache_dir) if cache_dir is not None else str(hf.constants.HF_HUB_CACHE)
    download = {"revision": revision, "cache_dir": cache_dir, "token": token, "local_files_only": offline}
    try:
        names: list[str] | None = None
        if filename is None and not offline:
            try:
                names = [n for n in hf.HfApi(token=token).list_repo_files(repo_id, revision=revision) if "/" not in n]
            except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError):
                raise
            except Exception as exc:  # the Hub is unreachable or failing: a cached snapshot may do
                logger.info("luxical: cannot list %s on the Hub (%s); looking in the cache", at, exc)
        if filename is None and names is None:
            # Offline: the cached snapshot of the revision (refs/<revision>, or a commit hash).
            folder = Path(
                hf.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True,
                                     allow_patterns=_PATTERNS)
            )
            filename = choose_model_file(
                [p.name for p in folder.iterdir() if p.is_file()], where=f"Hub repo {at} (cached snapshot)"
            )
            path = folder / filename
        else:
            if filename is None:
                assert names is not None
                filename = choose_model_file(names, where=f"Hub repo {at}")
            path = Path(hf.hf_hub_download(repo_id, filename, **download))
            if _layout(path) == "safetensors":
                config = str(Path(filename).with_name("config.json").as_posix())
                if names is None or config in names:
                    try:
                        hf.hf_hub_download(repo_id, config, **download)
                    except (EntryNotFoundError, LocalEntryNotFoundError):
                        pass  # optional: the tensors identify the model
    except RepositoryNotFoundError as exc:
        raise FileNotFoundError(
            f"cannot load model {at}: the Hugging Face Hub has no such repo, or it is private or "
            "gated (log in with `huggingface-cli login` or pass token=)"
        ) from exc
    except RevisionNotFoundError as exc:
        raise FileNotFoundError(f"cannot load model {at}: the Hugging Face Hub repo has no such revision") from exc
    except LocalEntryNotFoundError as exc:
        what = f"file '{filename}' of the " if filename is not None else "a "
        raise FileNotFoundError(
            f"cannot load model {at}: {unreachable}, and the Hugging Face cache ({cache}) does not "
            f"hold {what}snapshot of it"
        ) from exc
    except EntryNotFoundError as exc:
        raise FileNotFoundError(f"cannot load model {at}: the repo has no file '{filename}'") from exc
    except HFValidationError as exc:
        raise ValueError(f"cannot load model '{repo_id}': not a valid Hugging Face Hub repo id ({exc})") from exc
    _check_config(path, where=f"Hub repo {at}")
    commit = _snapshot_commit(path, filename)
    if commit is None:
        return _Resolved(path, f"hf://{repo_id}/{filename}")
    origin = {"repo_id": repo_id, "commit": commit, "filename": filename}
    return _Resolved(path, f"hf://{repo_id}@{commit}/{filename}", origin)


def _resolve_local(path: Path, *, revision: str | None, filename: str | None) -> _Resolved:
    if not path.exists():
        raise FileNotFoundError(f"cannot load model: no such file or folder '{path}'")
    if revision is not None:
        raise ValueError(
            f"revision={revision!r} applies to Hugging Face Hub repos, but '{path}' is a local "
            f"{'folder' if path.is_dir() else 'file'}"
        )
    if path.is_file():
        return _Resolved(path, os.path.abspath(path))
    if filename is None:
        names = [p.name for p in path.iterdir() if p.is_file()]
        filename = choose_model_file(names, where=f"folder '{path}'")
    file = path / filename
    if not file.is_file():
        raise FileNotFoundError(f"cannot load model: folder '{path}' has no file '{filename}'")
    _check_config(file, where=f"folder '{path}'")
    return _Resolved(file, os.path.abspath(file))


def _snapshot_commit(path: Path, filename: str) -> str | None:
    """The commit of a file in a Hub cache, ``.../snapshots/<commit>/<filename>``."""
    snapshot = path.parents[len(Path(filename).parts) - 1]
    return snapshot.name if snapshot.parent.name == "snapshots" else None


def _import_hub(repo_id: str) -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.constants  # a submodule its lazy __getattr__ does not serve
    except ImportError as exc:
        raise ImportError(
            f"'{repo_id}' is no local file or folder, so it names a Hugging Face Hub repo; loading "
            f"it needs the optional 'hub' extra (huggingface_hub, safetensors): {_EXTRA}",
            name="huggingface_hub",
        ) from exc
    return huggingface_hub


def _check_config(path: Path, *, where: str) -> None:
    """Refuses a safetensors file whose ``config.json`` says it is another kind of model."""
    if not path.name.endswith(".safetensors"):
        return
    config = path.parent / "config.json"
    if not config.is_file():
        return
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError) as exc:
        raise ModelFormatError(f"cannot load model from {where}: its config.json is not a JSON object ({exc})") from exc
    if model_type is not None and model_type != _MODEL_TYPE:
        raise ModelFormatError(
            f"cannot load model from {where}: its config.json declares model_type {model_type!r}, "
            f"not {_MODEL_TYPE!r}: '{path.name}' is not a Luxical model"
        )


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name.lower()) if part]


def _layout(path: Path) -> str:
    return "safetensors" if path.name.lower().endswith(".safetensors") else "npz"


# ---------------------------------------------------------------------- reading


def load_file(
    path: str | os.PathLike[str],
    *,
    precision: str = "float32",
    mmap: bool | None = None,
    first_layer_dtype: str | None = None,
    described: str | None = None,
) -> Embedder:
    """Reads a model file in either layout: ``.safetensors`` (the reference's Hugging Face
    export, by its suffix) or ``.npz`` (anything else, as :meth:`luxical.Embedder.load`).

    Args:
        path: The model file.
        precision: See :meth:`luxical.Embedder.load`.
        mmap: See :meth:`luxical.Embedder.load`.
        first_layer_dtype: See :meth:`luxical.Embedder.load` (a safetensors export is
            converted to ``.npz`` first, then loaded with it).
        described: How messages and :attr:`luxical.Embedder.source` name the model
            (default: the absolute path).

    Raises:
        FileNotFoundError: `path` does not exist.
        luxical.errors.ModelFormatError: the file is damaged or not a Luxical model.
        ImportError: a safetensors file, and the ``safetensors`` package is missing.
    """
    path = Path(path)
    if _layout(path) == "npz":
        return Embedder.load(path, precision=precision, mmap=mmap, first_layer_dtype=first_layer_dtype)
    return _load_safetensors(
        path, precision=precision, mmap=mmap, first_layer_dtype=first_layer_dtype, described=described or str(path.resolve())
    )


def _load_safetensors(
    path: Path, *, precision: str, mmap: bool | None, first_layer_dtype: str | None, described: str
) -> Embedder:
    try:
        import safetensors  # noqa: F401  (only whether it is installed; read in `_convert`)
    except ImportError as exc:
        raise ImportError(
            f"reading '{path.name}' of {described} (a safetensors export) needs the optional 'hub' "
            f"extra (safetensors): {_EXTRA}",
            name="safetensors",
        ) from exc
    where = f"cannot load model '{described}'"
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no file '{path}'")
    sha256 = _sha256_of(path)
    emb = _load_converted(
        sha256, path, precision=precision, mmap=mmap, first_layer_dtype=first_layer_dtype, where=where
    )
    if emb is None:
        # The weight cache cannot be written: convert through a temporary file, deleted at
        # once; the model then has no file, and pickles by value.
        with tempfile.TemporaryDirectory(prefix="luxical-") as tmp:
            emb = _convert(
                path, Path(tmp) / "model.npz", precision=precision, mmap=mmap,
                first_layer_dtype=first_layer_dtype, where=where,
            )
        emb._source, emb._source_stat = None, None
    emb._origin = described
    emb._converted_from = os.path.abspath(path)
    return emb


def converted_path(sha256: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the ``.npz`` converted from the safetensors file with this SHA-256 is kept:
    ``<weight cache>/<sha256>.st1.npz`` (see the module's documentation).

    Args:
        sha256: The safetensors file's SHA-256, 64 lower-case hex digits.
        cache_dir: The weight-cache directory; default :func:`luxical.weight_cache_dir`.
    """
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"sha256 must be 64 lower-case hex digits, got {sha256!r}")
    from luxical.embedder import weight_cache_dir

    return Path(cache_dir if cache_dir is not None else weight_cache_dir()) / f"{sha256}.{_CONVERSION}.npz"


def _sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes. A Hub cache names each LFS file's blob by it (the
    Hub's etag of an LFS file is its SHA-256), so a snapshot's link to such a blob tells it
    without reading the file; any other file is hashed."""
    real = path.resolve()
    if real.parent.name == "blobs" and _SHA256.fullmatch(real.name):
        return real.name
    digest = hashlib.sha256()
    with open(real, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _load_converted(
    sha256: str, path: Path, *, precision: str, mmap: bool | None, first_layer_dtype: str | None, where: str
) -> Embedder | None:
    """The model of the converted file of `sha256` in the weight cache, converting `path`
    into it first when it is missing or damaged; None when the cache cannot be written."""
    final = converted_path(sha256)
    emb = _read_converted(final, precision=precision, mmap=mmap, first_layer_dtype=first_layer_dtype)
    if emb is not None:
        return emb
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = _entry_lock(final.parent, sha256)
    except OSError as exc:
        logger.info("luxical: the weight cache %s cannot be written (%s); converting %s to a temporary file",
                    final.parent, exc, path)
        return None
    with lock:
        # Another process may have converted it while this one waited for the lock.
        emb = _read_converted(final, precision=precision, mmap=mmap, first_layer_dtype=first_layer_dtype)
        if emb is not None:
            return emb
        _remove_partials(final.parent, sha256)  # left by a writer that died (it held the lock)
        partial = final.parent / f".{sha256}.{_CONVERSION}.{os.getpid()}.{secrets.token_hex(4)}.partial"
        try:
            try:
                partial.touch(exist_ok=False)
            except OSError as exc:
                logger.info("luxical: the weight cache %s cannot be written (%s); converting %s to a temporary "
                            "file", final.parent, exc, path)
                return None
            try:
                emb = _convert(
                    path, partial, precision=precision, mmap=mmap, first_layer_dtype=first_layer_dtype, where=where
                )
                os.chmod(partial, 0o444)  # never rewritten in place: replaced, or removed
                before = time.time_ns()
                os.replace(partial, final)
            except OSError as exc:
                # A full disk, say: as the native weight cache does, fall back rather than
                # fail (a problem of the safetensors file itself shows again from there).
                logger.info("luxical: cannot write %s (%s); converting %s to a temporary file", final, exc, path)
                return None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
    from luxical.embedder import _stat

    # The model was read from the temporary name; its file is now `final`.
    emb._source, emb._source_stat, emb._checked_ns = str(final.resolve()), _stat(final), before
    logger.info("luxical: converted %s to %s", path, final)
    return emb


def _read_converted(
    final: Path, *, precision: str, mmap: bool | None, first_layer_dtype: str | None
) -> Embedder | None:
    """The model of an existing converted file; None when there is none, or when it is
    damaged (then it is removed, to be converted again)."""
    from luxical.errors import LuxicalError

    if not final.is_file():
        return None
    try:
        return Embedder.load(final, precision=precision, mmap=mmap, first_layer_dtype=first_layer_dtype)
    except FileNotFoundError:  # removed meanwhile (clear_weight_cache)
        return None
    except (LuxicalError, OSError) as exc:
        logger.warning("luxical: the converted model file %s is damaged (%s); converting it again", final, exc)
        with contextlib.suppress(OSError):
            os.unlink(final)
        return None


def _convert(
    path: Path, npz: Path, *, precision: str, mmap: bool | None, first_layer_dtype: str | None, where: str
) -> Embedder:
    """Converts the safetensors file `path` into the .npz `npz` and loads that."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            _safetensors_to_npz(f, npz, path, where)
    except SafetensorError as exc:  # bad header, truncated data, unknown dtype
        raise ModelFormatError(f"{where}: '{path.name}' is not a readable safetensors file: {exc}") from exc
    try:
        return Embedder.load(npz, precision=precision, mmap=mmap, first_layer_dtype=first_layer_dtype)
    except ModelFormatError as exc:
        raise type(exc)(f"{where}: {_tensor_names(str(exc), npz, path)}") from exc


class _EntryLock:
    """An exclusive ``flock`` on ``<sha256>.st1.lock`` in the weight cache: one process
    converts a file while the others wait for its result. Without ``fcntl`` (Windows), or
    where locks do not work, no lock: concurrent writers then each convert, and the last
    rename wins (the files are identical)."""

    def __init__(self, path: Path, fd: int | None):
        self.path, self.fd = path, fd

    def __enter__(self) -> _EntryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock
            self.fd = None


def _entry_lock(directory: Path, sha256: str) -> _EntryLock:
    """Takes the lock of one converted file (waiting for its holder)."""
    path = directory / f"{sha256}.{_CONVERSION}.lock"
    try:
        import fcntl
    except ImportError:
        return _EntryLock(path, None)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:  # another user's lock file: flock needs only a readable descriptor
            fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a filesystem without locks
            os.close(fd)
            return _EntryLock(path, None)
        # `clear_converted` removes lock files while holding them: if this one was removed
        # between open and flock, no one else sees it; take the current file's lock.
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        held = os.fstat(fd)
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return _EntryLock(path, fd)
        os.close(fd)


def _remove_partials(directory: Path, sha256: str) -> None:
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            m = _CONVERTED_PARTIAL.fullmatch(entry.name)
            if m and m["sha"] == sha256:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def clear_converted(directory: Path) -> int:
    """Removes the ``.npz`` files converted from safetensors files in the weight-cache
    directory (with their lock and temporary files), as :func:`luxical.clear_weight_cache`
    does for its own files: unlinked, never truncated; one being written is removed once
    it is complete. Returns how many converted files were removed."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    keys = set()
    for name in names:
        m = _CONVERTED_FILE.fullmatch(name) or _CONVERTED_PARTIAL.fullmatch(name)
        if m:
            keys.add(m["sha"])
    removed = 0
    for sha256 in sorted(keys):
        with _entry_lock(directory, sha256) as lock:
            try:
                os.unlink(directory / f"{sha256}.{_CONVERSION}.npz")
                removed += 1
            except FileNotFoundError:
                pass
            _remove_partials(directory, sha256)
            # Removed while held: a process waiting for this lock sees it is gone and takes
            # a new one (see `_entry_lock`).
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock.path)
    return removed


def _safetensors_to_npz(f: Any, npz: Path, path: Path, where: str) -> None:
    """Writes the tensors of an open safetensors export as the arrays of a format-v1 .npz.

    Streamed one tensor at a time (memory holds the largest tensor, not the model), stored
    uncompressed like ``numpy.savez``, zip64 for members over 4 GiB, never pickled.
    """
    present = set(f.keys())
    missing = [k for k in _TENSOR_TO_NPZ if k not in present]
    if missing:
        found = ", ".join(repr(k) for k in sorted(present)[:8]) + (", ..." if len(present) > 8 else "")
        raise ModelFormatError(
            f"{where}: '{path.name}' is not a Luxical safetensors export (the layout of the "
            f"reference's luxical_hf_wrapper.py): it has no tensor {', '.join(repr(m) for m in missing)} "
            f"(tensors found: {found or 'none'})"
        )
    num_layers = _count(f.get_tensor("embedder.num_layers"), "embedder.num_layers", where)
    layers = [_LAYER_TENSOR.format(i) for i in range(num_layers)]
    absent = [n for n in layers if n not in present]
    if absent:
        raise ModelFormatError(f"{where}: 'embedder.num_layers' is {num_layers} but tensor {absent[0]!r} is missing")
    members = [*_TENSOR_TO_NPZ.items(), *((n, n.removeprefix("embedder.")) for n in layers)]
    with zipfile.ZipFile(npz, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for tensor, name in members:
            array = f.get_tensor(tensor)
            if tensor == "embedder.recognized_ngrams":
                array = _token_ids_u32(array, where)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_TIME)
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            del array


def _count(array: np.ndarray, name: str, where: str) -> int:
    if array.dtype.kind not in "iu" or array.size != 1:
        raise ModelFormatError(f"{where}: tensor '{name}' must hold one integer, found {array.dtype} {array.shape}")
    n = int(array.reshape(-1)[0])
    if not 1 <= n <= _MAX_LAYERS:
        raise ModelFormatError(f"{where}: tensor '{name}' is {n}; expected 1 to {_MAX_LAYERS} layers")
    return n


def _token_ids_u32(array: np.ndarray, where: str) -> np.ndarray:
    """N-gram token ids as format v1's uint32. The wrapper stores the uint32 ids widened to
    int64 (padding stays ``2**32 - 1``); as in the native reader, an integer dtype's maximum
    is padding too."""
    if array.dtype.kind not in "iu":
        raise ModelFormatError(f"{where}: tensor 'embedder.recognized_ngrams' must hold integer token ids, found {array.dtype}")
    is_pad = array == np.iinfo(array.dtype).max
    bad = ~is_pad & (array > _PAD_U32)
    if array.dtype.kind == "i":
        bad |= array < 0
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ModelFormatError(
            f"{where}: tensor 'embedder.recognized_ngrams' holds token id {int(array[at])} at {at}, "
            f"outside uint32 (padding is {_PAD_U32})"
        )
    return np.where(is_pad, _PAD_U32, array).astype(np.uint32)


def _tensor_names(message: str, npz: Path, path: Path) -> str:
    """A native error about the temporary .npz, told in the safetensors file's terms."""
    message = message.replace(str(npz), str(path))
    for tensor, name in _TENSOR_TO_NPZ.items():
        if name in ("version", "tokenizer"):  # common words: only as quoted array names
            message = message.replace(f"'{name}'", f"'{tensor}'")
        else:
            message = re.sub(rf"(?<![\w.]){name}(?!\w)", tensor, message)
    message = re.sub(r"(?<![\w.])ngram_hash_to_ngram_idx(?!\w)", "embedder.ngram_keys/ngram_vals", message)
    return re.sub(r"(?<![\w.])nn_layer_(\d+)", r"embedder.nn_layer_\1", message)
