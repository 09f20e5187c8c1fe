"""Embedding health checks: is a set of embeddings spread out, finite and non-degenerate?

    >>> import numpy as np, luxical
    >>> report = luxical.health_report(np.eye(4, dtype=np.float32))
    >>> report.n, report.dim, report.ok
    (4, 4, True)

:func:`health_report` summarises an ``(n, dim)`` float array (overall and, optionally, per
group, e.g. per source or cluster) and raises flags for what usually means a broken model
or broken input: NaN/infinite rows, many all-zero rows, a collapsed embedding space (low
effective rank), and groups whose texts all embed alike. ``luxical diagnose`` runs it on
the Parquet files written by ``luxical embed``.

The statistics, for the rows that are finite and not all zero ("valid rows"; NaN/infinite
and all-zero rows are counted and left out):

- **effective rank** (Roy & Vetterli, "The effective rank: a measure of effective
  dimensionality", EUSIPCO 2007): each valid row is scaled to unit L2 norm, the rows are
  centred (their mean is subtracted), and with ``σ_1 ≥ … ≥ σ_r`` the singular values of that
  matrix and ``p_i = σ_i / Σ_j σ_j``, the effective rank is ``exp(-Σ_i p_i ln p_i)``. It is
  ``k`` for ``k`` equally strong orthogonal directions and 1 for a single direction; it is
  at most ``min(dim, valid rows - 1)`` (centring removes one dimension) and is 0 when every
  valid row points the same way (nothing is left after centring). Singular values below
  ``1e-5`` of the largest, or below ``sqrt(rows) * 1e-6`` (a spread of 10⁻⁶ per row: float32
  rounding), count as zero (``10 * eps`` instead for float16 input). It is computed from all
  valid rows, in float64, streaming: memory per group is about a ``dim × dim`` scatter
  matrix and the sample, ``sample × dim`` floats.
- **mean pairwise cosine**: the mean of ``cos(x_i, x_j)`` over the pairs ``i ≠ j`` of a
  seeded random sample of at most ``sample`` valid rows (all of them when there are no
  more); 1 when all rows point the same way, near 0 for well spread embeddings.
- **agreement** with a teacher (given ``teacher``): the Pearson and Spearman (average ranks
  for ties) correlations between the pairwise cosines of the sample rows in the embeddings
  and in the teacher's embeddings of the same rows (rows the teacher has as NaN/inf or zero
  are left out; cosines are ranked to 12 decimals, so duplicate rows tie). Needs at least 3
  such rows.

Flags (``HealthReport.flags``; ``ok`` is true when there is none):

- rows with NaN or infinite values (any);
- all-zero rows above 1% of the rows (Luxical embeds an empty text, or one with no known
  n-gram, as a zero row; a few are normal);
- collapse: an effective rank below 10% of the largest it can be, ``min(dim, valid rows -
  1)``, overall or in a group (for large sets that is 10% of ``dim``; the smaller bound
  keeps a small group's numbers comparable);
- texts that all look alike: a mean pairwise cosine above 0.9, overall or in a group.

This module needs only numpy and imports nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["GroupHealth", "HealthReport", "HealthStats", "health_report"]

#: Collapse: an effective rank below this share of ``min(dim, valid rows - 1)``.
COLLAPSE_RANK_SHARE = 0.1
#: "All look alike": a mean pairwise cosine above this.
ALIKE_COSINE = 0.9
#: All-zero rows are flagged above this share of the rows.
ZERO_ROWS_SHARE = 0.01

_CHUNK_ROWS = 16384  # rows converted to float64 at a time by health_report


# ----------------------------------------------------------------------------- report
@dataclass(kw_only=True)
class HealthStats:
    """The numbers of one set of rows (all rows, or one group). Undefined values are None
    (never NaN): shares of no rows, an effective rank of fewer than 2 valid rows, a mean
    cosine of fewer than 2 sample rows, an agreement without a teacher."""

    #: Rows, counting NaN/infinite and all-zero rows.
    n: int
    #: Rows holding a NaN or an infinite value (left out of the statistics below).
    nonfinite_rows: int
    nonfinite_share: float | None
    #: Rows whose values are all 0 (left out of the statistics below).
    zero_rows: int
    zero_share: float | None
    #: Finite, not all-zero rows: those the statistics below are computed from.
    valid_rows: int
    #: exp(Shannon entropy of the normalised singular values) of the centred unit rows.
    effective_rank: float | None
    #: ``effective_rank / dim``.
    effective_rank_share: float | None
    #: The largest effective rank these rows can have: ``min(dim, valid_rows - 1)``.
    max_rank: int
    #: Mean cosine over the pairs of distinct sample rows.
    mean_cosine: float | None
    #: Rows in the sample (at most ``sample``).
    sample_rows: int
    #: Pearson / Spearman correlation of the sample's pairwise cosines with the teacher's.
    agreement_pearson: float | None = None
    agreement_spearman: float | None = None
    #: Sample rows the agreement was computed from (valid in both).
    agreement_rows: int = 0


@dataclass(kw_only=True)
class GroupHealth(HealthStats):
    """The numbers of one group (rows sharing a label)."""

    #: The group's label, as given.
    group: Any
    #: The group's share of all rows.
    share: float


@dataclass(kw_only=True)
class HealthReport(HealthStats):
    """What :func:`health_report` found: the overall numbers (the fields of
    `HealthStats`), the groups', and the flags.

    ``str(report)`` is a compact table; ``report.to_dict()`` is JSON-serialisable (Python
    ints, floats, strings, None; never NaN)."""

    #: Columns of the embeddings.
    dim: int
    #: Groups with at least ``min_group`` rows, largest first.
    groups: list[GroupHealth] = field(default_factory=list)
    #: ``(label, rows)`` of the groups left out for having fewer than ``min_group`` rows.
    skipped_groups: list[tuple[Any, int]] = field(default_factory=list)
    #: One line per problem found, naming what and where; empty when healthy.
    flags: list[str] = field(default_factory=list)
    sample: int = 2000
    seed: int = 0
    min_group: int = 20
    #: Whether a teacher was given (agreement numbers).
    has_teacher: bool = False

    @property
    def ok(self) -> bool:
        """True when no flag was raised."""
        return not self.flags

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types: the overall numbers, ``groups`` (a list of dicts
        with ``group`` and ``share`` added), ``skipped_groups`` (``{"group", "n"}``),
        ``flags`` and ``ok``. Undefined numbers are None, never NaN."""
        out: dict[str, Any] = {"n": self.n, "dim": self.dim}
        out.update(_stats_dict(self))
        out["groups"] = [{"group": _json_label(g.group), "share": _json_float(g.share), **_stats_dict(g)} for g in self.groups]
        out["skipped_groups"] = [{"group": _json_label(label), "n": int(size)} for label, size in self.skipped_groups]
        out["flags"] = list(self.flags)
        out["ok"] = self.ok
        out["settings"] = {"sample": int(self.sample), "seed": int(self.seed), "min_group": int(self.min_group)}
        return out

    def __str__(self) -> str:
        head = f"embedding health: {self.n:,} rows × {self.dim} dims: " + (
            "OK" if self.ok else f"{len(self.flags)} flag{'s' if len(self.flags) != 1 else ''}"
        )
        columns = ["rows", "share", "non-finite", "zero", "eff. rank", "of dim", "mean cos"]
        if self.has_teacher:
            columns += ["pearson", "spearman"]
        rows = [("all", self, 1.0 if self.n else None)] + [(_short(g.group), g, g.share) for g in self.groups]
        width = max(len(name) for name, _, _ in rows)
        lines = [head, " " * width + "".join(f"{c:>11s}" for c in columns)]
        for name, s, share in rows:
            cells = [
                f"{s.n:,}",
                _pct(share),
                f"{s.nonfinite_rows:,}",
                _pct(s.zero_share),
                "-" if s.effective_rank is None else f"{s.effective_rank:.1f}",
                _pct(s.effective_rank_share),
                "-" if s.mean_cosine is None else f"{s.mean_cosine:.3f}",
            ]
            if self.has_teacher:
                cells += ["-" if v is None else f"{v:.3f}" for v in (s.agreement_pearson, s.agreement_spearman)]
            lines.append(f"{name:<{width}s}" + "".join(f"{c:>11s}" for c in cells))
        if self.skipped_groups:
            shown = ", ".join(f"{_short(label)} ({size:,})" for label, size in self.skipped_groups[:20])
            more = f" and {len(self.skipped_groups) - 20} more" if len(self.skipped_groups) > 20 else ""
            lines.append(f"skipped (fewer than {self.min_group} rows): {shown}{more}")
        lines.append("flags:" + ("" if self.flags else " none"))
        lines += [f"  - {flag}" for flag in self.flags]
        return "\n".join(lines)


def _stats_dict(s: HealthStats) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(HealthStats):
        value = getattr(s, f.name)
        out[f.name] = int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else _json_float(value)
    return out


def _json_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _json_label(label: Any) -> Any:
    if label is None or isinstance(label, (str, bool, int)):
        return label
    if isinstance(label, float):
        return label if math.isfinite(label) else None
    return str(label)


def _short(label: Any, limit: int = 32) -> str:
    text = repr(label)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pct(share: float | None) -> str:
    if share is None:
        return "-"
    return f"{100 * share:.2g}%" if 0 < share < 0.001 else f"{100 * share:.1f}%"


# ------------------------------------------------------------------------ statistics
class _Part:
    """Running statistics of one set of rows (all rows, or one group)."""

    def __init__(self, dim: int, sample: int, fold_rows: int):
        self.dim, self.sample, self.fold_rows = dim, sample, fold_rows
        self.n = self.nonfinite = self.zero = self.valid = 0
        # Unit rows minus `shift` (the first valid unit row): shifting keeps the scatter
        # matrix accurate when the rows are nearly identical.
        self.shift: np.ndarray | None = None
        self.pending: list[np.ndarray] = []  # shifted unit rows not yet in `scatter`
        self.pending_rows = 0
        self.scatter: np.ndarray | None = None  # Σ y yᵀ over folded rows
        self.total = np.zeros(dim)  # Σ y over all valid rows
        # The sample: the valid rows with the `sample` smallest random keys.
        self.keys = np.empty(0)
        self.index = np.empty(0, dtype=np.int64)
        self.rows = np.empty((0, dim))

    def add(self, n: int, nonfinite: int, zero: int, unit: np.ndarray, keys: np.ndarray, index: np.ndarray) -> None:
        self.n += n
        self.nonfinite += nonfinite
        self.zero += zero
        if not len(unit):
            return
        self.valid += len(unit)
        if self.shift is None:
            self.shift = unit[0].copy()
        y = unit - self.shift
        self.total += y.sum(axis=0)
        self.pending.append(y)
        self.pending_rows += len(y)
        if self.pending_rows >= self.fold_rows:
            self._fold()
        keys = np.concatenate([self.keys, keys])
        index = np.concatenate([self.index, index])
        rows = np.concatenate([self.rows, unit])
        if len(keys) > self.sample:
            keep = np.argpartition(keys, self.sample - 1)[: self.sample]
            keys, index, rows = keys[keep], index[keep], rows[keep]
        self.keys, self.index, self.rows = keys, index, rows

    def _fold(self) -> None:
        if not self.pending:
            return
        y = np.concatenate(self.pending)
        if self.scatter is None:
            self.scatter = np.zeros((self.dim, self.dim))
        self.scatter += y.T @ y
        self.pending, self.pending_rows = [], 0

    def singular_values(self) -> np.ndarray:
        """Singular values of the centred unit rows (exactly, by SVD, while the rows are
        few; else from the eigenvalues of the centred scatter matrix)."""
        m = self.valid
        if self.scatter is None:
            y = np.concatenate(self.pending)
            return np.linalg.svd(y - self.total / m, compute_uv=False)
        self._fold()
        assert self.scatter is not None
        c = self.scatter - np.outer(self.total, self.total) / m
        eig = np.linalg.eigvalsh((c + c.T) / 2)
        return np.sqrt(np.clip(eig, 0.0, None))[::-1]

    def stats(self, eps: float) -> dict[str, Any]:
        m, dim = self.valid, self.dim
        erank = None
        if m >= 2:
            erank = _effective_rank(self.singular_values(), m, eps)
        k = len(self.rows)
        mean_cos = None
        if k >= 2:
            s = self.rows.sum(axis=0)
            sq = float(np.einsum("ij,ij->", self.rows, self.rows))
            mean_cos = float(np.clip((float(s @ s) - sq) / (k * (k - 1)), -1.0, 1.0))
        return dict(
            n=self.n,
            nonfinite_rows=self.nonfinite,
            nonfinite_share=self.nonfinite / self.n if self.n else None,
            zero_rows=self.zero,
            zero_share=self.zero / self.n if self.n else None,
            valid_rows=m,
            effective_rank=erank,
            effective_rank_share=erank / dim if erank is not None and dim else None,
            max_rank=max(0, min(dim, m - 1)),
            mean_cosine=mean_cos,
            sample_rows=k,
        )


def _effective_rank(sv: np.ndarray, m: int, eps: float) -> float:
    """Roy & Vetterli's effective rank of singular values `sv` of an m-row matrix whose
    rows had unit norm; 0 when every singular value is (numerically) zero."""
    if not sv.size:
        return 0.0
    tol_rel = max(1e-5, 10 * eps)
    tol_abs = max(1e-6, 10 * eps)
    cutoff = max(tol_rel * float(sv.max()), math.sqrt(m) * tol_abs)
    kept = sv[sv > cutoff]
    if not kept.size:
        return 0.0
    p = kept / kept.sum()
    erank = math.exp(float(-(p * np.log(p)).sum()))
    return min(max(erank, 1.0), float(kept.size))  # exp(ln k) may round beyond [1, k]


class _Accumulator:
    """Streams row batches (with optional group labels) into the statistics of
    `health_report`; used by `health_report` and ``luxical diagnose``. The sample is the
    same however the rows are cut into batches: every row draws one random key, in row
    order, and the sample keeps the valid rows with the smallest keys."""

    def __init__(self, dim: int, *, sample: int = 2000, seed: int = 0, min_group: int = 20, eps: float = 0.0):
        self.dim, self.sample, self.seed, self.min_group, self.eps = dim, sample, seed, min_group, eps
        self._rng = np.random.default_rng(seed)
        self._fold_rows = max(dim, 512)  # rows kept for an exact SVD before the scatter matrix takes over
        self.overall = _Part(dim, sample, self._fold_rows)
        self.groups: dict[Any, _Part] = {}
        self.grouped: bool | None = None
        self.offset = 0

    def add(self, batch: np.ndarray, labels: Any = None) -> None:
        """Adds rows ``batch`` (b, dim), any float dtype, with their group labels (a
        sequence of b labels) or None (no groups). Either every batch has labels or none."""
        b = batch.shape[0]
        grouped = labels is not None
        if self.grouped is None:
            self.grouped = grouped
        elif self.grouped != grouped:
            raise ValueError("either every batch has group labels or none has")
        keys: np.ndarray = np.asarray(self._rng.random(b))
        index = np.arange(self.offset, self.offset + b, dtype=np.int64)
        self.offset += b
        unit, valid, nonfinite, zero = _unit_rows(batch)
        self.overall.add(b, int(nonfinite.sum()), int(zero.sum()), unit, keys[valid], index[valid])
        if not grouped:
            return
        codes, uniques = _factorize(labels, b)
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        valid_pos = np.cumsum(valid) - 1  # row -> its position in `unit` (valid rows only)
        for rows in np.split(order, bounds):
            if not len(rows):
                continue
            label = uniques[codes[rows[0]]]
            part = self.groups.get(label)
            if part is None:
                part = self.groups[label] = _Part(self.dim, self.sample, self._fold_rows)
            v = rows[valid[rows]]
            part.add(len(rows), int(nonfinite[rows].sum()), int(zero[rows].sum()), unit[valid_pos[v]], keys[v], index[v])

    def report(self, teacher: np.ndarray | None = None) -> HealthReport:
        """The report of the rows added so far (`teacher`: the teacher's embeddings of the
        same rows, in the same order, for the agreement numbers)."""
        dim, eps = self.dim, self.eps
        overall = self.overall.stats(eps)
        if teacher is not None:
            overall.update(_agreement(self.overall, teacher))
        report = HealthReport(
            dim=dim, sample=self.sample, seed=self.seed, min_group=self.min_group, has_teacher=teacher is not None, **overall
        )
        n = report.n
        ordered = sorted(self.groups.items(), key=lambda kv: (-kv[1].n, repr(kv[0])))
        for label, part in ordered:
            if part.n < self.min_group:
                report.skipped_groups.append((label, part.n))
                continue
            stats = part.stats(eps)
            if teacher is not None:
                stats.update(_agreement(part, teacher))
            report.groups.append(GroupHealth(group=label, share=part.n / n, **stats))
        report.flags = _flags(report, self.groups)
        return report


def _unit_rows(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(unit rows of the valid rows in float64, valid mask, non-finite mask, zero mask)."""
    x = np.asarray(batch, dtype=np.float64)
    if x.shape[1] == 0:
        none = np.zeros(len(x), dtype=bool)
        return np.empty((0, 0)), none, none, ~none
    finite: np.ndarray = np.asarray(np.isfinite(x).all(axis=1))
    scale = np.abs(np.where(finite[:, None], x, 0.0)).max(axis=1)
    valid = finite & (scale > 0)
    zero = finite & (scale == 0)
    y = x[valid] / scale[valid, None]  # scaled first, so huge or subnormal rows normalise
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return y, valid, ~finite, zero


def _factorize(labels: Any, n: int) -> tuple[np.ndarray, list[Any]]:
    """(codes, unique labels as Python values) of a sequence of n labels."""
    arr = labels if isinstance(labels, np.ndarray) else None
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "biuUS":
        uniques, codes = np.unique(arr, return_inverse=True)
        return codes.reshape(-1), uniques.tolist()
    seen: dict[Any, int] = {}
    codes = np.empty(n, dtype=np.int64)
    for i, label in enumerate(labels):
        if isinstance(label, np.generic):
            label = label.item()
        if isinstance(label, float) and math.isnan(label):
            label = None  # NaN != NaN: one "missing" group
        try:
            codes[i] = seen.setdefault(label, len(seen))
        except TypeError:
            raise ValueError(f"group labels must be hashable (strings, numbers...), got {type(label).__name__}") from None
    return codes, list(seen)


def _pairwise_upper(rows: np.ndarray) -> np.ndarray:
    """Cosines of the pairs i < j of unit rows."""
    g = rows @ rows.T
    return g[np.triu_indices(len(rows), 1)]


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new = np.empty(len(x), dtype=bool)
    new[:1] = True
    new[1:] = xs[1:] != xs[:-1]
    tie_group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(x))
    ranks = np.empty(len(x))
    ranks[order] = ((starts + ends + 1) / 2.0)[tie_group]
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    if not den > 0:
        return None
    return float(np.clip(float(a @ b) / den, -1.0, 1.0))


def _agreement(part: _Part, teacher: np.ndarray) -> dict[str, Any]:
    order = np.argsort(part.index)
    index, rows = part.index[order], part.rows[order]
    t_unit, t_valid, _, _ = _unit_rows(teacher[index])
    rows = rows[t_valid]
    if len(rows) < 3:
        return dict(agreement_pearson=None, agreement_spearman=None, agreement_rows=int(len(rows)))
    ce, ct = _pairwise_upper(rows), _pairwise_upper(t_unit)
    return dict(
        agreement_pearson=_pearson(ce, ct),
        # ranks of the cosines to 12 decimals, so that duplicate rows tie despite rounding
        agreement_spearman=_pearson(_ranks(np.round(ce, 12)), _ranks(np.round(ct, 12))),
        agreement_rows=int(len(rows)),
    )


def _flags(report: HealthReport, groups: dict[Any, _Part]) -> list[str]:
    flags = []

    def where_rows(attr: str) -> str:
        having = sorted(((getattr(p, attr), label) for label, p in groups.items() if getattr(p, attr)), key=lambda t: (-t[0], repr(t[1])))
        if not having:
            return ""
        shown = ", ".join(f"{_short(label)} {count:,}" for count, label in having[:5])
        more = f" and {len(having) - 5} more groups" if len(having) > 5 else ""
        return f" (in groups: {shown}{more})"

    if report.nonfinite_rows:
        flags.append(
            f"all rows: {report.nonfinite_rows:,} of {report.n:,} rows ({_pct(report.nonfinite_share)}) hold NaN or "
            f"infinite values{where_rows('nonfinite')}; they are left out of the other statistics"
        )
    if report.zero_share is not None and report.zero_share > ZERO_ROWS_SHARE:
        flags.append(
            f"all rows: {report.zero_rows:,} of {report.n:,} rows ({_pct(report.zero_share)}) are all zero, more than "
            f"{ZERO_ROWS_SHARE:.0%}{where_rows('zero')}"
        )
    targets: list[tuple[str, HealthStats]] = [("all rows", report)]
    targets += [(f"group {_short(g.group)}", g) for g in report.groups]
    for where, s in targets:
        if s.effective_rank is not None and s.effective_rank < COLLAPSE_RANK_SHARE * s.max_rank:
            bound = f"dim {report.dim}" if s.max_rank == report.dim else f"{s.max_rank} for {s.valid_rows:,} valid rows in dim {report.dim}"
            flags.append(
                f"{where}: collapse: effective rank {s.effective_rank:.2f} is below {COLLAPSE_RANK_SHARE:.0%} of "
                f"the largest possible ({bound})"
            )
        if s.mean_cosine is not None and s.mean_cosine > ALIKE_COSINE:
            flags.append(f"{where}: texts all look alike: mean pairwise cosine {s.mean_cosine:.3f} is above {ALIKE_COSINE}")
    return flags


# ------------------------------------------------------------------------------- API
def _float_matrix(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-dimensional (n, dim) array, got shape {arr.shape}")
    if arr.dtype.kind != "f":
        hint = ""
        if arr.dtype in (np.int8, np.uint8):
            hint = " (quantised embeddings? turn them back into floats with luxical.dequantize first)"
        raise ValueError(f"{name} must be a floating-point array, got dtype {arr.dtype}{hint}")
    return arr


def health_report(
    embeddings: Any,
    *,
    groups: Sequence[Any] | np.ndarray | None = None,
    teacher: Any = None,
    sample: int = 2000,
    seed: int = 0,
    min_group: int = 20,
) -> HealthReport:
    """Checks embeddings for NaN/zero rows, collapse and texts that all look alike.

    The statistics and flags are defined in the module docstring (:mod:`luxical.health`).

    Args:
        embeddings: ``(n, dim)`` floating-point array (float16/32/64). Quantised int8 /
            uint8 arrays are refused: :func:`luxical.dequantize` them first.
        groups: a label per row (length n: a list, numpy array, pandas Series...), e.g. the
            source of each text or a cluster id, for the per-group numbers. A NaN label
            counts as None.
        teacher: ``(n, d_t)`` float array: a teacher's embeddings of the same texts, in the
            same order, for the agreement numbers.
        sample: rows (at most) in the random sample behind the mean pairwise cosine and the
            agreement, overall and per group; the agreement needs ``sample²`` floats of
            memory (2000: 32 MB).
        seed: seed of that sample.
        min_group: groups with fewer rows are listed in ``skipped_groups`` only.

    Returns:
        A `HealthReport`; ``report.ok`` is true when no flag was raised.

    Raises:
        ValueError: not a 2-D floating-point array, a teacher or groups whose length is
            not n, or ``sample < 2`` / ``min_group < 1``.
    """
    emb = _float_matrix("embeddings", embeddings)
    n, dim = emb.shape
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 2:
        raise ValueError(f"sample must be an integer >= 2, got {sample!r}")
    if isinstance(min_group, bool) or not isinstance(min_group, (int, np.integer)) or min_group < 1:
        raise ValueError(f"min_group must be an integer >= 1, got {min_group!r}")
    t = None
    if teacher is not None:
        t = _float_matrix("teacher", teacher)
        if len(t) != n:
            raise ValueError(f"teacher has {len(t)} rows but embeddings have {n}; they must embed the same texts")
    labels: Any = None
    if groups is not None:
        if isinstance(groups, (str, bytes)):
            raise ValueError("groups must be a sequence of labels, one per row, not a single string")
        if isinstance(groups, np.ndarray) or hasattr(groups, "__array__"):  # numpy, pandas, pyarrow
            labels = np.asarray(groups)
            if labels.dtype.kind not in "biuUS":
                labels = labels.astype(object)
            if labels.ndim != 1:
                raise ValueError(f"groups must hold one label per row (1-dimensional), got shape {labels.shape}")
        else:
            labels = list(groups)
        if len(labels) != n:
            raise ValueError(f"groups has {len(labels)} labels but embeddings have {n} rows")
    acc = _Accumulator(dim, sample=int(sample), seed=seed, min_group=int(min_group), eps=float(np.finfo(emb.dtype).eps))
    if n == 0:
        acc.add(emb, labels[:0] if labels is not None else None)
    for start in range(0, n, _CHUNK_ROWS):
        stop = min(n, start + _CHUNK_ROWS)
        acc.add(emb[start:stop], labels[start:stop] if labels is not None else None)
    return acc.report(teacher=t)
