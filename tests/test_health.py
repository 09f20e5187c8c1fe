"""`luxical.health` and `luxical diagnose`: effective rank, mean pairwise cosine, teacher
agreement and flags against hand-computed values and scipy; the CLI end to end on real
texts embedded by `luxical embed`, on deliberately broken Parquet files and on bad input."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.stats

import luxical
from conftest import REPO
from luxical.arrow import from_fixed_size_list, to_fixed_size_list
from luxical.health import HealthReport, health_report

DIAGNOSE = [sys.executable, "-m", "luxical", "diagnose"]
EMBED = [sys.executable, "-m", "luxical", "embed", "--no-progress"]


# ------------------------------------------------------------------------- helpers
def signed_directions(counts: list[int], dim: int) -> np.ndarray:
    """Rows +e_i and -e_i, counts[i] times each: their mean is 0, so centring leaves them
    as they are, and XᵀX = diag(2 counts[i]): singular values sqrt(2 counts[i])."""
    rows = []
    for i, c in enumerate(counts):
        e = np.zeros(dim)
        e[i] = 1.0
        rows += [e] * c + [-e] * c
    return np.array(rows)


def entropy_rank(p: list[float]) -> float:
    """exp(Shannon entropy) of a probability vector, written out."""
    return math.exp(-sum(q * math.log(q) for q in p if q > 0))


def reference_effective_rank(emb: np.ndarray) -> float:
    """The definition, written plainly: unit rows, centred, SVD, entropy of σ/Σσ."""
    x = emb.astype(np.float64)
    x = x[np.isfinite(x).all(axis=1)]
    x = x[np.linalg.norm(x, axis=1) > 0]
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sv = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    return entropy_rank(list(sv / sv.sum()))


def reference_mean_cosine(emb: np.ndarray) -> float:
    x = emb.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    g = x @ x.T
    n = len(x)
    return float((g.sum() - np.trace(g)) / (n * (n - 1)))


def upper_cosines(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return (x @ x.T)[np.triu_indices(len(x), 1)]


def no_nan(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(no_nan(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(no_nan(v) for v in value)
    return True


def checked(report: HealthReport) -> dict:
    """The report's dict, after checking it is plain JSON without NaN and prints."""
    d = report.to_dict()
    assert no_nan(d), d
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert str(report).startswith("embedding health:")
    return d


# ------------------------------------------------------------------ effective rank
@pytest.mark.parametrize(
    "k, dim, repeats",
    [(1, 8, 3), (3, 8, 2), (16, 16, 1), (5, 8, 400), (7, 300, 50)],  # the last two: > 512 rows, the scatter path
)
def test_effective_rank_of_k_equal_orthogonal_directions_is_k(k, dim, repeats):
    x = signed_directions([repeats] * k, dim)
    r = health_report(x)
    assert r.effective_rank == pytest.approx(k, rel=1e-12)
    assert r.effective_rank_share == pytest.approx(k / dim, rel=1e-12)
    # Row lengths and a rotation change nothing (rows are normalised; the SVD is rotation-invariant).
    rng = np.random.default_rng(k)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    scaled = (x * rng.uniform(0.1, 10, size=(len(x), 1))) @ q
    assert health_report(scaled).effective_rank == pytest.approx(k, rel=1e-9)


def test_effective_rank_with_unequal_directions_by_hand():
    # ±e1 four times each, ±e2 once each: σ = sqrt(8), sqrt(2); p = (2/3, 1/3).
    r = health_report(signed_directions([4, 1], 6))
    assert r.effective_rank == pytest.approx(entropy_rank([2 / 3, 1 / 3]), rel=1e-12)
    assert r.effective_rank == pytest.approx(1.8899, abs=1e-4)
    # Three directions with 9, 4, 1 rows per sign: σ ∝ 3, 2, 1.
    r = health_report(signed_directions([9, 4, 1], 5))
    assert r.effective_rank == pytest.approx(entropy_rank([3 / 6, 2 / 6, 1 / 6]), rel=1e-12)


def test_centring_turns_k_unsigned_directions_into_k_minus_1():
    # e_1..e_k, 3 rows each: centred, the rows are those of I - J/k, a projection of rank
    # k - 1 with equal singular values, so the effective rank is k - 1.
    for k in (2, 4, 10):
        x = np.repeat(np.eye(k, 12), 3, axis=0)
        assert health_report(x).effective_rank == pytest.approx(k - 1, rel=1e-12)


def test_a_single_direction():
    rng = np.random.default_rng(0)
    v = rng.normal(size=64)
    c = rng.choice([-1.0, 1.0], size=200) * rng.uniform(0.5, 2, size=200)
    signed = health_report(np.outer(c, v))  # ±v: one direction after centring
    assert signed.effective_rank == pytest.approx(1.0, rel=1e-9)
    same = health_report(np.outer(np.abs(c), v).astype(np.float32))  # all +v: nothing left after centring
    assert same.effective_rank == 0.0
    for r in (signed, same):
        assert r.max_rank == 64 and not r.ok
        assert any(f.startswith("all rows: collapse") for f in r.flags), r.flags
    assert any("look alike" in f for f in same.flags)


def test_random_gaussian_data_is_healthy_and_a_rank_one_matrix_collapses():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 64)).astype(np.float32)
    gauss = health_report(x)
    assert gauss.ok, gauss.flags
    assert gauss.effective_rank > 0.8 * 64
    assert gauss.effective_rank == pytest.approx(reference_effective_rank(x), rel=1e-6)
    rank1 = health_report(np.outer(rng.normal(size=300), rng.normal(size=64)))
    assert rank1.flags == [f"all rows: collapse: effective rank {rank1.effective_rank:.2f} is below 10% of the largest possible (dim 64)"]


def test_effective_rank_matches_the_plain_definition_on_random_data():
    rng = np.random.default_rng(2)
    # decaying spectrum, an offset (so centring matters), 700 rows: the scatter path
    x = rng.normal(size=(700, 40)) * np.geomspace(1, 0.01, 40) + 0.3
    assert health_report(x).effective_rank == pytest.approx(reference_effective_rank(x), rel=1e-6)
    assert health_report(x[:100]).effective_rank == pytest.approx(reference_effective_rank(x[:100]), rel=1e-6)


def test_texts_that_all_look_alike_are_flagged_even_when_the_rank_is_high():
    rng = np.random.default_rng(3)
    x = rng.normal(size=64) + 0.05 * rng.normal(size=(400, 64))
    r = health_report(x)
    assert r.effective_rank > 0.5 * 64  # the noise around the common direction is isotropic
    assert r.mean_cosine > 0.9
    assert r.flags == [f"all rows: texts all look alike: mean pairwise cosine {r.mean_cosine:.3f} is above 0.9"]


# ------------------------------------------------------------- mean pairwise cosine
def test_mean_pairwise_cosine_by_hand_with_bad_rows_left_out():
    # pairs: (2,0)·(0,1) = 0, (2,0)·(1,1) = 1/√2, (0,1)·(1,1) = 1/√2 -> mean √2/3
    x = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [np.nan, 1.0], [np.inf, 0.0], [0.0, 0.0]])
    r = health_report(x)
    assert r.mean_cosine == pytest.approx(math.sqrt(2) / 3, rel=1e-12)
    assert (r.n, r.valid_rows, r.nonfinite_rows, r.zero_rows, r.sample_rows) == (6, 3, 2, 1, 3)
    assert r.nonfinite_share == pytest.approx(2 / 6) and r.zero_share == pytest.approx(1 / 6)
    assert r.effective_rank is not None and math.isfinite(r.effective_rank)
    assert r.flags[0].startswith("all rows: 2 of 6 rows (33.3%) hold NaN or infinite values")
    assert r.flags[1].startswith("all rows: 1 of 6 rows (16.7%) are all zero, more than 1%")
    checked(r)
    # opposite rows: cosine -1
    assert health_report(np.array([[1.0, 0.0], [-3.0, 0.0]])).mean_cosine == pytest.approx(-1.0)


def test_mean_pairwise_cosine_equals_the_average_over_pairs():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 7)) + 0.5
    pairs = [
        float(x[i] @ x[j]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[j])) for i in range(40) for j in range(40) if i != j
    ]
    assert health_report(x).mean_cosine == pytest.approx(sum(pairs) / len(pairs), rel=1e-12)


def test_the_sample_is_seeded_and_bounded():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, 16)) + 0.4
    exact = reference_mean_cosine(x)
    a = health_report(x, sample=300, seed=1)
    b = health_report(x, sample=300, seed=1)
    c = health_report(x, sample=300, seed=2)
    assert a.sample_rows == 300 and a.to_dict() == b.to_dict()
    assert a.mean_cosine != c.mean_cosine
    assert abs(a.mean_cosine - exact) < 0.03 and abs(c.mean_cosine - exact) < 0.03
    assert health_report(x, sample=3000).mean_cosine == pytest.approx(exact, rel=1e-9)
    # The effective rank uses every row, never the sample.
    assert a.effective_rank == pytest.approx(reference_effective_rank(x), rel=1e-6)


# ----------------------------------------------------------------------- agreement
def test_agreement_equals_scipy_pearson_and_spearman():
    rng = np.random.default_rng(6)
    emb = rng.normal(size=(80, 16))
    teacher = emb @ rng.normal(size=(16, 32)) + 2.0 * rng.normal(size=(80, 32))
    r = health_report(emb, teacher=teacher)
    ce, ct = upper_cosines(emb), upper_cosines(teacher)
    assert r.agreement_rows == 80
    assert r.agreement_pearson == pytest.approx(scipy.stats.pearsonr(ce, ct)[0], rel=1e-9)
    assert r.agreement_spearman == pytest.approx(scipy.stats.spearmanr(ce, ct)[0], rel=1e-9)
    assert 0.2 < r.agreement_spearman < 0.99
    assert "pearson" in str(r) and checked(r)["agreement_spearman"] == r.agreement_spearman


def test_spearman_with_ties_and_bad_teacher_rows():
    rng = np.random.default_rng(7)
    emb = rng.normal(size=(60, 8))
    # The teacher has only 4 distinct rows: its cosines take a handful of values (ties).
    teacher = rng.normal(size=(4, 8))[rng.integers(0, 4, size=60)]
    teacher[3] = np.nan
    teacher[10] = 0.0
    r = health_report(emb, teacher=teacher)
    keep = np.setdiff1d(np.arange(60), [3, 10])
    ce, ct = upper_cosines(emb[keep]), upper_cosines(teacher[keep])
    assert len(np.unique(np.round(ct, 12))) <= 10  # ties, as intended
    assert r.agreement_rows == 58
    # Identical teacher rows give cosines equal up to float rounding: ranked to 12 decimals.
    assert r.agreement_spearman == pytest.approx(scipy.stats.spearmanr(np.round(ce, 12), np.round(ct, 12))[0], rel=1e-9)
    assert r.agreement_pearson == pytest.approx(scipy.stats.pearsonr(ce, ct)[0], rel=1e-9)


def test_agreement_per_group_uses_the_groups_rows():
    rng = np.random.default_rng(8)
    emb = rng.normal(size=(90, 12))
    teacher = emb + rng.normal(size=(90, 12))
    groups = ["a"] * 50 + ["b"] * 40
    r = health_report(emb, teacher=teacher, groups=groups)
    for g, rows in (("a", slice(0, 50)), ("b", slice(50, 90))):
        (gh,) = [x for x in r.groups if x.group == g]
        ce, ct = upper_cosines(emb[rows]), upper_cosines(teacher[rows])
        assert gh.agreement_spearman == pytest.approx(scipy.stats.spearmanr(ce, ct)[0], rel=1e-9)


# -------------------------------------------------------------------------- groups
def test_a_group_of_identical_rows_is_flagged_and_the_others_are_not():
    rng = np.random.default_rng(9)
    x = np.concatenate([rng.normal(size=(100, 32)), rng.normal(size=(80, 32)), np.tile(rng.normal(size=32), (40, 1)), rng.normal(size=(5, 32))])
    labels = ["web"] * 100 + ["books"] * 80 + ["spam"] * 40 + ["tiny"] * 5
    for groups in (labels, np.array(labels), np.array(labels, dtype=object)):
        r = health_report(x, groups=groups)
        assert [g.group for g in r.groups] == ["web", "books", "spam"]
        assert r.skipped_groups == [("tiny", 5)]
        spam = r.groups[2]
        assert spam.n == 40 and spam.share == pytest.approx(40 / 225)
        assert spam.effective_rank == 0.0 and spam.mean_cosine == pytest.approx(1.0)
        assert r.flags == [
            "group 'spam': collapse: effective rank 0.00 is below 10% of the largest possible (dim 32)",
            "group 'spam': texts all look alike: mean pairwise cosine 1.000 is above 0.9",
        ]
        d = checked(r)
        assert [g["group"] for g in d["groups"]] == ["web", "books", "spam"]
        assert d["skipped_groups"] == [{"group": "tiny", "n": 5}] and not d["ok"]
        assert sum(g["share"] for g in d["groups"]) == pytest.approx(220 / 225)
    # The overall numbers do not depend on the grouping.
    assert health_report(x).effective_rank == pytest.approx(r.effective_rank, rel=1e-12)


def test_a_small_group_is_compared_with_the_rank_it_can_have():
    # 30 random rows in 384 dims have at most rank 29: 10% of 29, not of 384, is collapse.
    rng = np.random.default_rng(10)
    x = rng.normal(size=(60, 384))
    r = health_report(x, groups=[0] * 30 + [1] * 30)
    assert r.ok, r.flags
    assert [g.max_rank for g in r.groups] == [29, 29]
    assert all(g.effective_rank > 20 for g in r.groups)
    assert [g["group"] for g in checked(r)["groups"]] == [0, 1]  # numpy ints become Python ints


def test_nan_and_zero_rows_are_counted_per_group():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(100, 8))
    x[[1, 2]] = np.nan
    x[60, 3] = -np.inf
    x[[70, 71, 72]] = 0.0
    r = health_report(x, groups=["a"] * 50 + ["b"] * 50)
    a, b = r.groups
    assert (a.nonfinite_rows, a.zero_rows, b.nonfinite_rows, b.zero_rows) == (2, 0, 1, 3)
    assert (r.nonfinite_rows, r.zero_rows, r.valid_rows) == (3, 3, 94)
    assert r.flags[0] == "all rows: 3 of 100 rows (3.0%) hold NaN or infinite values (in groups: 'a' 2, 'b' 1); they are left out of the other statistics"
    assert r.flags[1] == "all rows: 3 of 100 rows (3.0%) are all zero, more than 1% (in groups: 'b' 3)"
    assert r.effective_rank == pytest.approx(reference_effective_rank(x), rel=1e-9)
    checked(r)


# --------------------------------------------------------------------- edge cases
@pytest.mark.parametrize(
    "name, x, expect",
    [
        ("no rows", np.zeros((0, 5)), dict(n=0, valid_rows=0, effective_rank=None, mean_cosine=None, nonfinite_share=None, ok=True)),
        ("one row", np.ones((1, 5)), dict(n=1, valid_rows=1, effective_rank=None, mean_cosine=None, max_rank=0, ok=True)),
        ("all zero", np.zeros((4, 5)), dict(n=4, zero_rows=4, zero_share=1.0, valid_rows=0, effective_rank=None, ok=False)),
        ("all NaN", np.full((3, 4), np.nan), dict(n=3, nonfinite_rows=3, valid_rows=0, effective_rank=None, ok=False)),
        ("d=1 both signs", np.array([[1.0], [-2.0], [3.0]]), dict(effective_rank=1.0, max_rank=1, mean_cosine=-1 / 3, ok=True)),
        ("d=1 one sign", np.array([[1.0], [2.0]]), dict(effective_rank=0.0, mean_cosine=1.0, ok=False)),
        ("d=0", np.zeros((3, 0)), dict(n=3, zero_rows=3, effective_rank=None, effective_rank_share=None, ok=False)),
        ("float16", np.eye(6, dtype=np.float16), dict(effective_rank=5.0, mean_cosine=0.0, ok=True)),
        ("huge and tiny values", np.array([[1e300, 1e300], [1e-310, -1e-310], [3.0, 4.0]]), dict(valid_rows=3, ok=True)),
        ("two rows", np.array([[1.0, 0.0], [0.0, 1.0]]), dict(effective_rank=1.0, mean_cosine=0.0, ok=True)),
    ],
)
def test_edge_cases_give_numbers_or_none_never_nan(name, x, expect):
    r = health_report(x, groups=["g"] * len(x), min_group=1)
    d = checked(r)
    for key, value in expect.items():
        got = r.ok if key == "ok" else d[key]
        assert got == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), (name, key, got)
    if len(x):
        (g,) = d["groups"]
        assert {k: g[k] for k in d if k in g and k != "share"} == {k: d[k] for k in d if k in g and k != "share"}


def test_bad_arguments_are_refused_naming_the_problem():
    x = np.ones((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"floating-point.*int8.*dequantize"):
        health_report(luxical.quantize(x, "int8"))
    with pytest.raises(ValueError, match=r"floating-point.*uint8"):
        health_report(luxical.quantize(x, "uint8"))
    with pytest.raises(ValueError, match=r"floating-point.*int64"):
        health_report(np.ones((4, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="2-dimensional"):
        health_report(np.ones(4))
    with pytest.raises(ValueError, match="groups has 3 labels but embeddings have 4 rows"):
        health_report(x, groups=["a", "b", "c"])
    with pytest.raises(ValueError, match="single string"):
        health_report(x, groups="abcd")
    with pytest.raises(ValueError, match="teacher has 2 rows"):
        health_report(x, teacher=np.ones((2, 3)))
    with pytest.raises(ValueError, match="teacher must be a floating-point"):
        health_report(x, teacher=np.ones((4, 3), dtype=np.int32))
    with pytest.raises(ValueError, match="sample"):
        health_report(x, sample=1)
    with pytest.raises(ValueError, match="min_group"):
        health_report(x, min_group=0)


def test_report_is_exported_and_prints_a_table():
    assert luxical.health_report is health_report and luxical.HealthReport is HealthReport
    x = np.eye(4)[[0, 1, 2, 2]]  # group 'b': two identical rows
    r = health_report(x, groups=["a", "a", "b", "b"], min_group=2, teacher=x)
    text = str(r)
    assert text.splitlines()[0] == "embedding health: 4 rows × 4 dims: 2 flags"
    assert re.search(r"^all\s+4\s+100\.0%", text, re.M) and re.search(r"^'a'\s+2\s+50\.0%", text, re.M)
    assert "spearman" in text and text.rstrip().endswith("is above 0.9")


# ------------------------------------------------------------------------------ CLI
def run(args: list, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=600)


def write_embeddings(path: Path, emb: np.ndarray, *, variable: bool = False, **columns) -> Path:
    col = to_fixed_size_list(emb)
    if variable:
        col = pa.array(list(emb), type=pa.list_(pa.from_numpy_dtype(emb.dtype)))
    pq.write_table(pa.table({**columns, "embedding": col}), path)
    return path


@pytest.fixture(scope="module")
def embedded(real_text_rows, tmp_path_factory):
    """Real texts from four sources embedded by `luxical embed` (default model) into two
    Parquet files, with the source carried as the id column."""
    tmp = tmp_path_factory.mktemp("diagnose")
    rows = real_text_rows[:300] + real_text_rows[32000:32300]  # Debian descriptions + documentation chunks
    sources = [r["source"].split(":")[0] for r in rows]
    texts = [r["text"] for r in rows]
    outs = []
    for name, part in (("a", slice(0, 250)), ("b", slice(250, None))):
        src = tmp / f"{name}.parquet"
        pq.write_table(pa.table({"source": sources[part], "text": texts[part]}), src)
        out = tmp / f"emb_{name}.parquet"
        proc = run(EMBED + [src, "--out", out, "--id-column", "source"])
        assert proc.returncode == 0, proc.stderr
        outs.append(out)
    tables = [pq.read_table(o) for o in outs]
    emb = np.concatenate([from_fixed_size_list(t.column("embedding")) for t in tables])
    got_sources = sum((t.column("source").to_pylist() for t in tables), [])
    assert got_sources == sources and len(emb) == 600
    return tmp, outs, emb, np.array(sources), texts


def diagnose_json(args: list) -> tuple[int, dict]:
    proc = run(DIAGNOSE + args + ["--json"])
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_cli_diagnose_real_embeddings_by_source(embedded):
    tmp, outs, emb, sources, _ = embedded
    rc, d = diagnose_json(outs + ["--by", "source"])
    assert rc == 0 and d["ok"] and d["flags"] == [], d["flags"]
    assert d["files"] == [str(o) for o in outs] and d["by"] == "source"
    assert (d["n"], d["dim"], d["valid_rows"], d["zero_rows"], d["nonfinite_rows"]) == (600, luxical.load().dim, 600, 0, 0)
    # Independent numbers, from the files as read by pyarrow: every row is in the sample.
    assert d["effective_rank"] == pytest.approx(reference_effective_rank(emb), rel=1e-5)
    assert d["mean_cosine"] == pytest.approx(reference_mean_cosine(emb), rel=1e-6)
    assert d["effective_rank"] > 0.5 * d["dim"]
    names, counts = np.unique(sources, return_counts=True)
    by_name = {g["group"]: g for g in d["groups"]}
    assert set(by_name) == set(names) == {"debian-description", "linux-doc-6.1", "python3.11-doc", "perl-doc"}
    for name, count in zip(names, counts):
        g = by_name[name]
        assert g["n"] == count and g["share"] == pytest.approx(count / 600)
        assert g["effective_rank"] == pytest.approx(reference_effective_rank(emb[sources == name]), rel=1e-5)
        assert g["mean_cosine"] == pytest.approx(reference_mean_cosine(emb[sources == name]), rel=1e-6)
        assert 0 < g["mean_cosine"] < 0.9
    # Read in batches of 37 rows, or in memory by health_report: the same numbers.
    _, small = diagnose_json(outs + ["--by", "source", "--batch-size", "37"])
    in_memory = health_report(emb, groups=sources).to_dict()
    for other in (small, in_memory):
        assert [g["group"] for g in other["groups"]] == [g["group"] for g in d["groups"]]
        for key in ("effective_rank", "mean_cosine"):
            got = [other[key]] + [g[key] for g in other["groups"]]
            assert got == pytest.approx([d[key]] + [g[key] for g in d["groups"]], rel=1e-9)
    # A sample of at most 100 rows, overall and per group (seeded; the same rows however the
    # file is cut into batches); the effective rank still uses every row.
    _, sampled = diagnose_json(outs + ["--by", "source", "--sample", "100", "--seed", "3"])
    _, sampled_small = diagnose_json(outs + ["--by", "source", "--sample", "100", "--seed", "3", "--batch-size", "64"])
    assert sampled_small["mean_cosine"] == pytest.approx(sampled["mean_cosine"], rel=1e-9)
    assert sampled["sample_rows"] == 100
    assert [g["sample_rows"] for g in sampled["groups"]] == [min(100, g["n"]) for g in d["groups"]]
    assert sampled["effective_rank"] == pytest.approx(d["effective_rank"], rel=1e-9)
    assert abs(sampled["mean_cosine"] - d["mean_cosine"]) < 0.05
    # The table.
    text = run(DIAGNOSE + outs + ["--by", "source"])
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"embedding health: 600 rows × {d['dim']} dims: OK")
    assert "'perl-doc'" in text.stdout and text.stdout.rstrip().endswith("flags: none")


def test_cli_diagnose_collapsed_files(embedded, tmp_path):
    _, _, emb, sources, _ = embedded
    # Every row the same vector: collapse, and all alike.
    same = write_embeddings(tmp_path / "same.parquet", np.tile(emb[0], (100, 1)))
    rc, d = diagnose_json([same])
    assert rc == 1 and d["effective_rank"] == 0.0 and d["mean_cosine"] == pytest.approx(1.0)
    assert [f.split(":")[1].strip() for f in d["flags"]] == ["collapse", "texts all look alike"]
    proc = run(DIAGNOSE + [same])
    assert proc.returncode == 1 and "collapse: effective rank 0.00" in proc.stdout
    # Rank one: every row ±(one vector), stored as variable-size lists.
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=(500, 1)).astype(np.float32)
    rank1 = write_embeddings(tmp_path / "rank1.parquet", signs * emb[0], variable=True)
    rc, d = diagnose_json([rank1])
    assert rc == 1 and d["effective_rank"] == pytest.approx(1.0, rel=1e-6)
    assert d["flags"] == [f"all rows: collapse: effective rank 1.00 is below 10% of the largest possible (dim {emb.shape[1]})"]
    # One source collapsed among healthy ones: only that group is flagged.
    broken = emb.copy()
    broken[sources == "perl-doc"] = emb[0]
    part = write_embeddings(tmp_path / "part.parquet", broken, source=sources.tolist())
    rc, d = diagnose_json([part, "--by", "source"])
    n_perl = int((sources == "perl-doc").sum())
    assert rc == 1 and 20 <= n_perl < emb.shape[1]
    assert d["flags"] == [
        f"group 'perl-doc': collapse: effective rank 0.00 is below 10% of the largest possible ({n_perl - 1} for {n_perl} valid rows in dim {emb.shape[1]})",
        "group 'perl-doc': texts all look alike: mean pairwise cosine 1.000 is above 0.9",
    ]


def test_cli_diagnose_nan_null_and_zero_rows(embedded, tmp_path):
    _, _, emb, _, _ = embedded
    x = emb[:100].copy()
    x[5, 7] = np.nan
    arr = to_fixed_size_list(x)
    values = [None if i == 9 else row for i, row in enumerate(arr.to_pylist())]  # a null row
    values[11] = [None] + values[11][1:]  # a null value inside a row
    values[20] = [0.0] * emb.shape[1]
    path = tmp_path / "holes.parquet"
    pq.write_table(pa.table({"embedding": pa.array(values, type=arr.type)}), path)
    rc, d = diagnose_json([path])
    assert rc == 1 and (d["n"], d["nonfinite_rows"], d["zero_rows"], d["valid_rows"]) == (100, 3, 1, 96)
    assert d["flags"][0].startswith("all rows: 3 of 100 rows (3.0%) hold NaN or infinite values")
    keep = np.setdiff1d(np.arange(100), [5, 9, 11, 20])
    assert d["effective_rank"] == pytest.approx(reference_effective_rank(x[keep]), rel=1e-5)


def test_cli_diagnose_quantised_outputs(embedded):
    tmp, outs, emb, sources, _ = embedded
    _, float_report = diagnose_json([outs[0]])
    src = tmp / "a.parquet"
    for precision in ("int8", "uint8", "binary"):
        out = tmp / f"q_{precision}.parquet"
        proc = run(EMBED + [src, "--out", out, "--quantize", precision])
        assert proc.returncode == 0, proc.stderr
        if precision == "int8":
            rc, d = diagnose_json([out])  # int8 codes: dequantised by default
            assert d["dequantized"] == ["int8"]
        else:
            refused = run(DIAGNOSE + [out])
            assert refused.returncode == 2 and refused.stderr.count("\n") == 1
            assert str(out) in refused.stderr and "'embedding'" in refused.stderr and "--dequantize uint8 or --dequantize binary" in refused.stderr
            rc, d = diagnose_json([out, "--dequantize", precision])
        assert rc == 0 and d["n"] == 250, d["flags"]
        if precision != "binary":  # 8-bit codes: nearly the float numbers
            assert d["effective_rank"] == pytest.approx(float_report["effective_rank"], rel=0.02)
            assert d["mean_cosine"] == pytest.approx(float_report["mean_cosine"], abs=0.01)
        else:  # sign bits: 8 per byte
            assert d["dim"] == 8 * math.ceil(emb.shape[1] / 8)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("luxical diagnose: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def test_cli_diagnose_bad_input_exits_2_naming_file_and_column(embedded, tmp_path):
    tmp, outs, emb, _, _ = embedded
    good = outs[0]
    one_line_error(run(DIAGNOSE + [tmp_path / "missing.parquet"]), "missing.parquet: no such file")
    one_line_error(run(DIAGNOSE + [good, tmp_path / "missing.parquet"]), "missing.parquet: no such file")
    one_line_error(run(DIAGNOSE + [good, "--column", "vec"]), str(good), "no column 'vec'", "--column")
    one_line_error(run(DIAGNOSE + [good, "--by", "cluster"]), str(good), "no column 'cluster'", "--by")
    one_line_error(run(DIAGNOSE + [tmp / "a.parquet"]), "a.parquet", "no column 'embedding'")
    one_line_error(run(DIAGNOSE + [good, "--column", "source"]), str(good), "column 'source' has type string")
    ints = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"embedding": pa.array([[1, 2], [3, 4]], pa.list_(pa.int64()))}), ints)
    one_line_error(run(DIAGNOSE + [ints]), "ints.parquet", "column 'embedding' holds lists of int64")
    ragged = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"embedding": pa.array([[1.0, 2.0]] * 5 + [[1.0, 2.0, 3.0]], pa.list_(pa.float32()))}), ragged)
    one_line_error(run(DIAGNOSE + [ragged, "--batch-size", "4"]), "ragged.parquet: row 6: column 'embedding' holds 3 values, but earlier rows hold 2")
    small = write_embeddings(tmp_path / "small.parquet", emb[:5, :10].copy())
    one_line_error(run(DIAGNOSE + [good, small]), "different sizes", f"{small}: 10")
    nested = write_embeddings(tmp_path / "nested.parquet", emb[:5].copy(), tags=[["x"]] * 5)
    one_line_error(run(DIAGNOSE + [nested, "--by", "tags"]), "nested.parquet", "column 'tags' has type list<", "--by needs a column of plain values")
    one_line_error(run(DIAGNOSE + [good, "--dequantize", "int8"]), str(good), "holds floats")
    not_parquet = tmp_path / "notes.parquet"
    not_parquet.write_text("not parquet\n")
    one_line_error(run(DIAGNOSE + [not_parquet]), "notes.parquet: cannot read as Parquet")
    usage = run(DIAGNOSE + [good, "--sample", "1"])
    assert usage.returncode == 2 and "--sample" in usage.stderr


def test_cli_diagnose_empty_file(tmp_path):
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"embedding": pa.array([], pa.list_(pa.float32(), 4))}), path)
    rc, d = diagnose_json([path])
    assert rc == 0 and (d["n"], d["dim"], d["effective_rank"], d["mean_cosine"]) == (0, 4, None, None)


def test_readme_diagnose_block_runs_as_written(tmp_path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Checking embeddings: `luxical diagnose`", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "embedding health: 6 rows" in proc.stdout and "'python-doc'" in proc.stdout
    d = json.loads((tmp_path / "health.json").read_text())
    assert d["ok"] and [g["n"] for g in d["groups"]] == [3, 3]
