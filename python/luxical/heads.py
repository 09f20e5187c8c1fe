"""Heads: quality scores and cluster ids computed beside the embedding, in the same pass.

A head is a small model applied to each document's embedding by the Rust runtime right
after the embedding is computed (while it is still in cache), so a quality score or a
cluster id costs a few dot products instead of a second pass over stored embeddings:

- :class:`LinearHead`: ``k`` named scores ``activation(e · Wᵀ + b)`` (a ridge or
  logistic probe); activation ``"none"``, ``"sigmoid"`` or ``"softmax"``.
- :class:`MlpHead`: a small MLP classifier (ReLU hidden layers, then the activation).
- :class:`CentroidHead`: ``k`` centroids → the nearest one's id and its cosine, and
  optionally a coarse id through a fine → coarse map (e.g. 5000 clusters → 40 domains).

Fit them with maintained libraries (:func:`fit_probe`: scikit-learn's ``Ridge`` /
``RidgeClassifier`` / ``LogisticRegression`` / ``MLPClassifier``; :func:`fit_centroids`:
scikit-learn's ``KMeans``), save them (:meth:`Head.save`) and load them (:func:`load`),
then ``emb.with_heads(head, "domains.npz")(texts)`` returns the embeddings and the
head columns (see :meth:`luxical.Embedder.with_heads`). Every head's :meth:`Head.apply`
is the numpy reference of what the runtime computes.

Head file format (version 1): a ``.npz`` (zip of ``.npy`` arrays, read with
``allow_pickle=False``; nothing is ever unpickled) holding plain numeric arrays and one
``luxical_head`` uint8 array, the UTF-8 JSON metadata::

    {"format": "luxical-head", "version": 1, "kind": "linear" | "mlp" | "centroid",
     "name": "quality", "dim": 385, "labels": [...], "activation": "none",
     "arrays": {"weight_0": {"dtype": "<f4", "shape": [k, 385]}, ...},
     "sha256": "<hex>", "info": {...}}

Arrays: linear and MLP heads ``weight_i`` (float32 ``[out, in]``) and ``bias_i`` (float32
``[out]``) for each layer ``i`` (a linear head has one); centroid heads ``centroids``
(float32 ``[k, dim]``, no zero row) and optionally ``coarse`` (int64 ``[k]``, the coarse id
of each centroid). ``sha256`` is the SHA-256 of, for each array in sorted name order, its
name, its dtype string and its shape (as JSON) each followed by a zero byte, then its
C-order bytes. A load checks all of it: the format name and version, the kind, that the
arrays present are exactly those listed with those dtypes and shapes, the checksum, that
every value is finite and that the shapes agree; any failure raises
:class:`luxical.errors.HeadFormatError` naming the file and the problem.

Output columns (see :attr:`Head.columns`): linear / MLP ``{name}_{label}`` per output
(float32); centroid ``{name}_id`` (int32), ``{name}_cosine`` (float32) and, with a coarse
map, ``{name}_coarse_id`` (int32). The runtime computes every head in float64 from the
returned float32 embedding (products of float32 values are exact in float64; sums run in
a fixed order, the same on every CPU kernel), so the columns agree with :meth:`Head.apply`
on the returned embeddings to float64 rounding before the columns are stored as float32
(the tests check ≤ 1e-6, relative above 1).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from luxical.errors import HeadFormatError, UnsupportedFormatVersionError

__all__ = [
    "HEAD_FORMAT_VERSION",
    "CentroidHead",
    "Embedded",
    "Head",
    "LinearHead",
    "MlpHead",
    "fit_centroids",
    "fit_probe",
    "from_bytes",
    "load",
]

#: Version of the head file format this luxical writes and reads.
HEAD_FORMAT_VERSION = 1
_FORMAT_NAME = "luxical-head"
_META = "luxical_head"
_ACTIVATIONS = ("none", "sigmoid", "softmax")


class Head:
    """Base class of the heads: a name, the embedding dimension it reads, output columns,
    a numpy reference :meth:`apply`, and :meth:`save` / :func:`load`."""

    kind: str = ""
    name: str
    #: Where the head was loaded from (None for a head built in memory).
    source: str | None = None

    @property
    def dim(self) -> int:
        """Embedding dimension the head reads."""
        raise NotImplementedError

    @property
    def columns(self) -> list[str]:
        """Names of the output columns, in order."""
        raise NotImplementedError

    def apply(self, embeddings: np.ndarray) -> dict[str, np.ndarray]:
        """The numpy reference: the head's columns for `embeddings` ``(n, dim)``, in float64
        (ids int64)."""
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _meta(self) -> dict[str, Any]:
        raise NotImplementedError

    def _native(self) -> Any:
        raise NotImplementedError

    def _described(self) -> str:
        return f"head file '{self.source}'" if self.source else f"head {self.name!r}"

    def to_bytes(self) -> bytes:
        """The head file's bytes (see the module docstring for the format)."""
        arrays = {k: np.ascontiguousarray(v) for k, v in self._arrays().items()}
        meta = {
            "format": _FORMAT_NAME,
            "version": HEAD_FORMAT_VERSION,
            "kind": self.kind,
            "name": self.name,
            "dim": self.dim,
            **self._meta(),
            "arrays": {k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in sorted(arrays.items())},
            "sha256": _checksum(arrays),
        }
        buf = io.BytesIO()
        content: dict[str, Any] = {**arrays, _META: np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
        np.savez(buf, **content)
        return buf.getvalue()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the head file to `path` (atomically: a temporary file, then a rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with open(tmp, "wb") as f:
                f.write(self.to_bytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Head)
        a, b = self._arrays(), other._arrays()
        return (
            self.name == other.name
            and self._meta() == other._meta()
            and a.keys() == b.keys()
            and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        # By value, as the head file's bytes (checked again on the receiving side).
        return (_from_bytes_with_source, (self.to_bytes(), self.source))


def _from_bytes_with_source(data: bytes, source: str | None) -> Head:
    head = _parse(data, source or "<bytes>")
    head.source = source
    return head


@dataclass(eq=False)
class _Affine:
    weight: np.ndarray  # float32 [out, in]
    bias: np.ndarray  # float32 [out]


def _activate(x: np.ndarray, activation: str) -> np.ndarray:
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if activation == "softmax":
        z = np.exp(x - x.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    return x


class MlpHead(Head):
    """An MLP head: ``layers`` ``[(W [out, in], b [out]), ...]``, ReLU between them, then
    `activation` (``"none"``, ``"sigmoid"`` per output, ``"softmax"`` over the outputs).
    One output column per label: ``{name}_{label}``."""

    kind = "mlp"

    def __init__(
        self,
        layers: Sequence[tuple[np.ndarray, np.ndarray]],
        *,
        labels: Sequence[str],
        activation: str = "none",
        name: str = "mlp",
        info: dict[str, Any] | None = None,
    ):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        _check_name(name)
        if not layers:
            raise ValueError(f"{type(self).__name__} {name!r} needs at least one layer")
        self.layers = [
            _Affine(np.ascontiguousarray(w, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32))
            for w, b in layers
        ]
        self.labels = [str(x) for x in labels]
        self.activation = activation
        self.name = name
        self.info = dict(info or {})
        self.source = None
        _check_layers(self.layers, self.labels, self._described())

    @property
    def dim(self) -> int:
        return int(self.layers[0].weight.shape[1])

    @property
    def columns(self) -> list[str]:
        return [f"{self.name}_{label}" for label in self.labels]

    def apply(self, embeddings: np.ndarray) -> dict[str, np.ndarray]:
        x = _check_embeddings(embeddings, self.dim).astype(np.float64)
        for i, layer in enumerate(self.layers):
            x = x @ layer.weight.astype(np.float64).T + layer.bias.astype(np.float64)
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        x = _activate(x, self.activation)
        return {c: x[:, j] for j, c in enumerate(self.columns)}

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, layer in enumerate(self.layers):
            out[f"weight_{i}"] = layer.weight
            out[f"bias_{i}"] = layer.bias
        return out

    def _meta(self) -> dict[str, Any]:
        return {"labels": self.labels, "activation": self.activation, "info": self.info}

    def _native(self) -> Any:
        from luxical._luxical import Head as _NativeHead

        return _NativeHead.mlp(
            [(l.weight.shape[0], l.weight.shape[1], l.weight.ravel(), l.bias) for l in self.layers],
            self.activation,
        )

    def __repr__(self) -> str:
        dims = " → ".join([str(self.dim)] + [str(l.weight.shape[0]) for l in self.layers])
        return f"{type(self).__name__}({self.name!r}, {dims}, activation={self.activation!r})"


class LinearHead(MlpHead):
    """A linear head: ``k`` scores ``activation(e · Wᵀ + b)``; `weight` ``[k, dim]``,
    `bias` ``[k]``, one label per score (columns ``{name}_{label}``)."""

    kind = "linear"

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray,
        *,
        labels: Sequence[str],
        activation: str = "none",
        name: str = "linear",
        info: dict[str, Any] | None = None,
    ):
        super().__init__([(weight, bias)], labels=labels, activation=activation, name=name, info=info)

    @property
    def weight(self) -> np.ndarray:
        return self.layers[0].weight

    @property
    def bias(self) -> np.ndarray:
        return self.layers[0].bias


class CentroidHead(Head):
    """A centroid head: `centroids` ``[k, dim]`` (need not be unit, none zero); columns
    ``{name}_id`` (the centroid of highest cosine; ties go to the lowest id),
    ``{name}_cosine`` and, with `coarse` (``[k]`` ints, the coarse id of each centroid),
    ``{name}_coarse_id``. An all-zero embedding gets id 0 and cosine 0."""

    kind = "centroid"

    def __init__(
        self,
        centroids: np.ndarray,
        *,
        coarse: np.ndarray | None = None,
        name: str = "cluster",
        info: dict[str, Any] | None = None,
    ):
        _check_name(name)
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.coarse = None if coarse is None else np.ascontiguousarray(coarse, dtype=np.int64)
        self.name = name
        self.info = dict(info or {})
        self.source = None
        _check_centroids(self.centroids, self.coarse, self._described())

    @property
    def k(self) -> int:
        """Number of (fine) centroids."""
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def columns(self) -> list[str]:
        cols = [f"{self.name}_id", f"{self.name}_cosine"]
        return cols + ([f"{self.name}_coarse_id"] if self.coarse is not None else [])

    def apply(self, embeddings: np.ndarray) -> dict[str, np.ndarray]:
        e = _check_embeddings(embeddings, self.dim).astype(np.float64)
        c = self.centroids.astype(np.float64)
        cos = (e @ c.T) / np.sqrt((c * c).sum(axis=1))
        ids = cos.argmax(axis=1) if len(e) else np.zeros(0, dtype=np.int64)
        out = {self.columns[0]: ids.astype(np.int64), self.columns[1]: cos[np.arange(len(e)), ids]}
        if self.coarse is not None:
            out[self.columns[2]] = self.coarse[ids]
        return out

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {"centroids": self.centroids}
        if self.coarse is not None:
            out["coarse"] = self.coarse
        return out

    def _meta(self) -> dict[str, Any]:
        return {"info": self.info}

    def _native(self) -> Any:
        from luxical._luxical import Head as _NativeHead

        coarse = None if self.coarse is None else self.coarse.astype(np.uint32)
        return _NativeHead.centroid(self.centroids.ravel(), self.k, self.dim, coarse)

    def __repr__(self) -> str:
        extra = "" if self.coarse is None else f" → {len(np.unique(self.coarse))} coarse"
        return f"CentroidHead({self.name!r}, {self.k} x {self.dim}{extra})"


@dataclass
class Embedded:
    """What an `Embedder` with heads returns: the embeddings (None when not asked for) and
    the heads' output columns by name (``result["quality_good"]``)."""

    embeddings: np.ndarray | None
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, column: str) -> np.ndarray:
        return self.columns[column]

    def __len__(self) -> int:
        if self.embeddings is not None:
            return len(self.embeddings)
        return len(next(iter(self.columns.values()))) if self.columns else 0


# ---------------------------------------------------------------------------- loading


def load(path: str | os.PathLike[str]) -> Head:
    """Loads a head file (see the module docstring for the format and its checks).

    Raises:
        FileNotFoundError: `path` does not exist.
        luxical.errors.HeadFormatError: the file is not a valid head file (the message
            names the file and the problem).
        luxical.errors.UnsupportedFormatVersionError: the file's version is newer than
            this luxical reads.
    """
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read()
    head = _parse(data, str(path))
    head.source = str(path)
    return head


def from_bytes(data: bytes) -> Head:
    """A head from the bytes of a head file (:meth:`Head.to_bytes`)."""
    return _parse(bytes(data), "<bytes>")


def _parse(data: bytes, where: str) -> Head:
    def bad(problem: str) -> HeadFormatError:
        return HeadFormatError(f"cannot load head file '{where}': {problem}")

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = list(npz.files)
            arrays = {k: npz[k] for k in names}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise bad(f"not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    if _META not in arrays:
        raise bad(f"no '{_META}' metadata array; is it a luxical head file?")
    raw = arrays.pop(_META)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"dtype {raw.dtype}, shape {raw.shape}")
        meta = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"'{_META}' is not UTF-8 JSON metadata ({exc})") from None
    if meta.get("format") != _FORMAT_NAME:
        raise bad(f"metadata 'format' is {meta.get('format')!r}, expected {_FORMAT_NAME!r}")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise bad(f"metadata 'version' is {version!r}, expected an integer")
    if version > HEAD_FORMAT_VERSION or version < 1:
        raise UnsupportedFormatVersionError(
            f"cannot load head file '{where}': head format version {version} is not supported "
            f"(this luxical reads version {HEAD_FORMAT_VERSION}); upgrade luxical"
        )
    listed = meta.get("arrays")
    if not isinstance(listed, dict):
        raise bad("metadata has no 'arrays' table")
    if set(listed) != set(arrays):
        missing, extra = sorted(set(listed) - set(arrays)), sorted(set(arrays) - set(listed))
        raise bad(f"arrays differ from the metadata: missing {missing}, unlisted {extra}")
    for name, spec in listed.items():
        arr = arrays[name]
        if not isinstance(spec, dict) or spec.get("dtype") != arr.dtype.str or spec.get("shape") != list(arr.shape):
            raise bad(f"array '{name}' is {arr.dtype.str} {list(arr.shape)}, the metadata says {spec}")
    if meta.get("sha256") != _checksum(arrays):
        raise bad("checksum mismatch: the arrays are not those the file was written with (damaged or edited)")
    for name, arr in arrays.items():
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            first = int(np.flatnonzero(~np.isfinite(arr.ravel()))[0])
            raise bad(f"array '{name}' has a non-finite value at flat index {first}")
    kind, name = meta.get("kind"), meta.get("name")
    if not isinstance(name, str):
        raise bad(f"metadata 'name' is {name!r}, expected a string")
    info = meta.get("info") or {}
    try:
        if kind in ("linear", "mlp"):
            n_layers = len(arrays) // 2
            expected = {f"{p}_{i}" for i in range(n_layers) for p in ("weight", "bias")}
            if set(arrays) != expected or n_layers == 0 or (kind == "linear" and n_layers != 1):
                raise bad(f"a {kind} head holds weight_i and bias_i arrays, found {sorted(arrays)}")
            layers = [(arrays[f"weight_{i}"], arrays[f"bias_{i}"]) for i in range(n_layers)]
            for i, (w, b) in enumerate(layers):
                if w.dtype != np.float32 or b.dtype != np.float32:
                    raise bad(f"layer {i}: weights and bias must be float32, found {w.dtype} / {b.dtype}")
            labels, activation = meta.get("labels"), meta.get("activation")
            if not isinstance(labels, list):
                raise bad(f"metadata 'labels' is {labels!r}, expected a list")
            head: Head
            if kind == "linear":
                head = LinearHead(layers[0][0], layers[0][1], labels=labels, activation=str(activation), name=name, info=info)
            else:
                head = MlpHead(layers, labels=labels, activation=str(activation), name=name, info=info)
        elif kind == "centroid":
            if "centroids" not in arrays or set(arrays) - {"centroids", "coarse"}:
                raise bad(f"a centroid head holds 'centroids' (and optionally 'coarse'), found {sorted(arrays)}")
            if arrays["centroids"].dtype != np.float32:
                raise bad(f"'centroids' must be float32, found {arrays['centroids'].dtype}")
            coarse = arrays.get("coarse")
            if coarse is not None and coarse.dtype.kind not in "iu":
                raise bad(f"'coarse' must hold integers, found {coarse.dtype}")
            head = CentroidHead(arrays["centroids"], coarse=coarse, name=name, info=info)
        else:
            raise bad(f"metadata 'kind' is {kind!r}, expected 'linear', 'mlp' or 'centroid'")
    except HeadFormatError:
        raise
    except ValueError as exc:
        raise bad(str(exc)) from None
    if meta.get("dim") != head.dim:
        raise bad(f"metadata 'dim' is {meta.get('dim')!r} but the arrays read {head.dim}-dimensional embeddings")
    return head


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        for part in (name, arr.dtype.str, json.dumps(list(arr.shape))):
            h.update(part.encode("utf-8") + b"\0")
        h.update(arr.tobytes())
    return h.hexdigest()


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ValueError(f"a head name must be a non-empty string of letters, digits, '_' or '-', got {name!r}")


def _check_layers(layers: list[_Affine], labels: list[str], what: str) -> None:
    prev = None
    for i, layer in enumerate(layers):
        w, b = layer.weight, layer.bias
        if w.ndim != 2 or 0 in w.shape:
            raise ValueError(f"{what}: layer {i} weights must be a non-empty [out, in] matrix, got shape {w.shape}")
        if b.shape != (w.shape[0],):
            raise ValueError(f"{what}: layer {i} bias has shape {b.shape}, expected ({w.shape[0]},)")
        if prev is not None and w.shape[1] != prev:
            raise ValueError(f"{what}: layer {i} takes {w.shape[1]} inputs but layer {i - 1} gives {prev}")
        for arr, part in ((w, "weights"), (b, "bias")):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{what}: layer {i} {part} hold a non-finite value (NaN or inf)")
        prev = w.shape[0]
    if len(labels) != prev:
        raise ValueError(f"{what}: {len(labels)} labels for {prev} outputs")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{what}: labels are not unique: {labels}")


def _check_centroids(c: np.ndarray, coarse: np.ndarray | None, what: str) -> None:
    if c.ndim != 2 or 0 in c.shape:
        raise ValueError(f"{what}: centroids must be a non-empty [k, dim] matrix, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"{what}: centroids hold a non-finite value (NaN or inf)")
    zero = np.flatnonzero(~np.any(c != 0, axis=1))
    if len(zero):
        raise ValueError(f"{what}: centroid {int(zero[0])} is all zeros")
    if coarse is not None:
        if coarse.shape != (c.shape[0],):
            raise ValueError(f"{what}: coarse map has shape {coarse.shape}, expected ({c.shape[0]},)")
        if len(coarse) and (coarse.min() < 0 or coarse.max() >= 2**31):
            raise ValueError(f"{what}: coarse ids must be in [0, 2**31), found {coarse.min()}..{coarse.max()}")


def _check_embeddings(embeddings: np.ndarray, dim: int) -> np.ndarray:
    e = np.asarray(embeddings)
    if e.ndim != 2 or e.shape[1] != dim:
        raise ValueError(f"embeddings must have shape (n, {dim}), got {e.shape}")
    return e


def resolve(heads: Sequence[Head | str | os.PathLike[str]]) -> list[Head]:
    """Heads from head objects or head file paths; output column names must not clash."""
    out = [h if isinstance(h, Head) else load(h) for h in heads]
    seen: dict[str, str] = {}
    for h in out:
        for c in h.columns:
            if c in seen:
                raise ValueError(f"{h._described()} and {seen[c]} both write column {c!r}; give them different names")
            seen[c] = h._described()
    return out


# ---------------------------------------------------------------------------- fitting


def fit_probe(
    embeddings: np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    *,
    kind: str = "logistic",
    name: str = "probe",
    C: float = 10.0,
    alpha: float = 1.0,
    hidden: int = 256,
    seed: int = 0,
    max_iter: int | None = None,
) -> MlpHead:
    """Fits a probe on embeddings with scikit-learn and returns it as a head.

    Args:
        embeddings: ``(n, dim)`` embeddings (e.g. ``emb(texts)``).
        labels: one label per row: class labels (str or int) for ``"logistic"``,
            ``"mlp"`` and ``"ridge"`` with class labels; numbers (float) for a ridge
            regression (a quality score).
        kind: ``"logistic"`` (``LogisticRegression(C=C)``: softmax over the classes,
            sigmoid for two), ``"ridge"`` (``Ridge(alpha)`` on float targets: one score
            column ``{name}_score``; ``RidgeClassifier(alpha)`` on class labels: one
            raw score per class) or ``"mlp"`` (``MLPClassifier`` with one ReLU hidden
            layer of `hidden` units, Adam, early stopping on 10% held out; the small
            classifier of the Luxical paper).
        name: the head's name (column prefix).
        C: inverse regularisation of the logistic probe.
        alpha: regularisation of the ridge probe (and L2 of the MLP, divided by 1000).
        hidden: hidden units of the MLP probe.
        seed: random state of the solvers.
        max_iter: solver iterations (default: 1000 logistic, 200 MLP).

    Returns:
        A :class:`LinearHead` (logistic, ridge) or :class:`MlpHead` (mlp); for a
        two-class probe the one column is the probability (logistic / MLP) or score
        (ridge) of the second class, named after it.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    y = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"embeddings must be (n, dim) with one label per row, got {x.shape} and {len(y)} labels")
    info: dict[str, Any] = {"fit": f"fit_probe(kind={kind!r})", "n_train": len(x)}
    if kind == "ridge" and y.dtype.kind == "f":
        from sklearn.linear_model import Ridge

        model = Ridge(alpha=alpha).fit(x, y)
        w = np.atleast_2d(model.coef_)
        b = np.atleast_1d(model.intercept_)
        info["model"] = f"sklearn Ridge(alpha={alpha})"
        return LinearHead(w, b, labels=["score"], name=name, info=info)
    if kind in ("ridge", "logistic"):
        if kind == "ridge":
            from sklearn.linear_model import RidgeClassifier

            model = RidgeClassifier(alpha=alpha).fit(x, y)
            activation = "none"
            info["model"] = f"sklearn RidgeClassifier(alpha={alpha})"
        else:
            from sklearn.linear_model import LogisticRegression

            model = LogisticRegression(C=C, max_iter=max_iter or 1000, random_state=seed).fit(x, y)
            activation = "sigmoid" if len(model.classes_) == 2 else "softmax"
            info["model"] = f"sklearn LogisticRegression(C={C})"
        classes = [str(c) for c in model.classes_]
        w, b = np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_)
        labels_out = classes[1:] if w.shape[0] == 1 else classes
        return LinearHead(w, b, labels=labels_out, activation=activation, name=name, info=info)
    if kind == "mlp":
        from sklearn.neural_network import MLPClassifier

        # Integer targets: scikit-learn 1.7's early-stopping score calls isnan on the
        # predicted labels, which fails for string labels. np.unique sorts like its own
        # label encoder, so the class order is the same.
        names, codes = np.unique(np.asarray(y), return_inverse=True)
        model = MLPClassifier(
            hidden_layer_sizes=(hidden,), alpha=alpha / 1000, max_iter=max_iter or 200, random_state=seed,
            early_stopping=True,
        ).fit(x, codes)
        classes = [str(names[c]) for c in model.classes_]
        layers = [(w.T, b) for w, b in zip(model.coefs_, model.intercepts_)]
        activation = {"logistic": "sigmoid", "softmax": "softmax"}[model.out_activation_]
        labels_out = classes[1:] if layers[-1][0].shape[0] == 1 else classes
        info["model"] = f"sklearn MLPClassifier(hidden_layer_sizes=({hidden},))"
        return MlpHead(layers, labels=labels_out, activation=activation, name=name, info=info)
    raise ValueError(f'kind must be "logistic", "ridge" or "mlp", got {kind!r}')


def fit_centroids(
    embeddings: np.ndarray,
    k: int,
    *,
    spherical: bool = True,
    coarse_k: int | None = None,
    name: str = "cluster",
    seed: int = 0,
    n_init: int = 1,
    max_iter: int = 100,
) -> CentroidHead:
    """Fits k-means centroids with scikit-learn's ``KMeans`` and returns a centroid head.

    scikit-learn rather than FAISS: it is already the probes' dependency, is a plain
    wheel on every platform, and is fast enough for the sample sizes a head is fitted on
    (it is multi-threaded); FAISS would add a large binary dependency for speed that a
    one-off fit on a sample does not need.

    Args:
        embeddings: ``(n, dim)`` sample embeddings.
        k: number of clusters.
        spherical: cluster by cosine: rows are L2-normalised (all-zero rows left out)
            before k-means and the centroids normalised after, so the runtime's
            assignment (highest cosine) is the clustering's (for unit rows and unit
            centroids, nearest in Euclidean distance = highest cosine). False: plain
            Euclidean k-means on the rows as given (the head still assigns by cosine).
        coarse_k: also merge the `k` centroids into `coarse_k` coarse clusters (k-means
            on the unit centroids weighted by their cluster sizes): the head then writes
            ``{name}_coarse_id`` too (e.g. 5000 fine clusters → 40 domains).
        name: the head's name (column prefix).
        seed: random state.
        n_init: k-means restarts.
        max_iter: iterations per run.
    """
    from sklearn.cluster import KMeans

    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (n, dim), got shape {x.shape}")
    if spherical:
        norms = np.linalg.norm(x, axis=1)
        x = x[norms > 0] / norms[norms > 0, None]
    if len(x) < k:
        raise ValueError(f"k={k} clusters need at least {k} non-zero rows, got {len(x)}")
    km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed).fit(x)
    centroids = km.cluster_centers_.astype(np.float64)
    if spherical:
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    info: dict[str, Any] = {
        "fit": f"fit_centroids(k={k}, spherical={spherical}, coarse_k={coarse_k})",
        "model": "sklearn KMeans",
        "n_train": len(x),
    }
    coarse = None
    if coarse_k is not None:
        if not 1 <= coarse_k <= k:
            raise ValueError(f"coarse_k must be between 1 and k={k}, got {coarse_k}")
        unit = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        sizes = np.bincount(km.labels_, minlength=k).astype(np.float64)
        merge = KMeans(n_clusters=coarse_k, n_init=n_init, random_state=seed).fit(unit, sample_weight=sizes + 1e-9)
        coarse = merge.labels_.astype(np.int64)
    return CentroidHead(centroids.astype(np.float32), coarse=coarse, name=name, info=info)


def native_heads(heads: Sequence[Head]) -> Any:
    """The runtime's form of `heads` (a ``luxical._luxical.Heads``)."""
    from luxical._luxical import Heads as _NativeHeads

    return _NativeHeads([h._native() for h in heads])


def columns_from_native(heads: Sequence[Head], values: np.ndarray) -> dict[str, np.ndarray]:
    """Names the runtime's ``(n_outputs, n)`` float32 output, one row per column: scores
    and cosines float32 (views of the rows), ids int32 (exact: ids stay below 2**24)."""
    out: dict[str, np.ndarray] = {}
    col = 0
    for h in heads:
        for c in h.columns:
            out[c] = values[col].astype(np.int32) if c.endswith("_id") and isinstance(h, CentroidHead) else values[col]
            col += 1
    return out
