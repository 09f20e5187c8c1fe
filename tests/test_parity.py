"""Parity with outputs saved by the reference luxical 1.1.2 (tests/fixtures/reference, made by
scripts/make_reference_fixtures.py).

Token ids and TF-IDF column indices must match exactly; TF-IDF values and embeddings to
1e-5 (cosine >= 0.99999 per row)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

import luxical
from conftest import unit_or_zero_rows


@pytest.fixture(scope="module")
def expected(fixture_dir):
    return np.load(fixture_dir / "expected.npy")


@pytest.fixture(scope="module")
def expected_tfidf(fixture_dir):
    with np.load(fixture_dir / "expected_tfidf.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def info(fixture_dir):
    return json.loads((fixture_dir / "fixture_info.json").read_text())


def test_model_shape_matches_fixture_readme(fixture_embedder):
    assert fixture_embedder.layer_dims == [20_000, 32, 256, 256, 64]
    assert fixture_embedder.max_ngram_len == 5
    assert fixture_embedder.vocab_size == 20_000
    assert fixture_embedder.dim == 64


def test_embeddings_match_reference(fixture_embedder, fixture_texts, expected, info):
    got = fixture_embedder(fixture_texts)
    assert got.shape == expected.shape == (200, 64)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert np.abs(got - expected).max() <= 1e-5
    zero_rows = [i for i in range(len(got)) if not got[i].any()]
    assert zero_rows == info["zero_norm_rows"]
    nonzero = [i for i in range(len(got)) if i not in zero_rows]
    cos = np.sum(got[nonzero].astype(np.float64) * expected[nonzero], axis=1) / (
        np.linalg.norm(got[nonzero], axis=1) * np.linalg.norm(expected[nonzero], axis=1)
    )
    assert cos.min() >= 0.99999
    assert unit_or_zero_rows(got)


@pytest.mark.parametrize("batch_size", [1, 3, 64, 4096])
@pytest.mark.parametrize("num_threads", [1, 2])
def test_embeddings_match_reference_any_batching(fixture_embedder, fixture_texts, expected, batch_size, num_threads):
    got = fixture_embedder(fixture_texts, batch_size=batch_size, num_threads=num_threads)
    assert np.abs(got - expected).max() <= 1e-5


def test_token_ids_match_reference(fixture_embedder, fixture_texts, expected_tfidf, info):
    offsets = expected_tfidf["token_offsets"]
    ids = fixture_embedder.tokenize(fixture_texts[:20])
    assert [len(t) for t in ids] == info["tokens_first20"] == list(np.diff(offsets))
    for i, toks in enumerate(ids):
        assert toks.dtype == np.uint32
        np.testing.assert_array_equal(toks, expected_tfidf["token_ids"][offsets[i] : offsets[i + 1]], err_msg=f"doc {i}")


def test_tfidf_matches_reference(fixture_embedder, fixture_texts, expected_tfidf):
    got = fixture_embedder.tfidf(fixture_texts[:20])
    e = expected_tfidf
    ref = sp.csr_matrix((e["data"], e["indices"], e["indptr"]), shape=tuple(e["shape"]))
    assert got.shape == ref.shape and got.dtype == np.float32
    assert got.nnz == ref.nnz
    for i in range(20):
        g = dict(zip(got[i].indices.tolist(), got[i].data.tolist()))
        r = dict(zip(ref[i].indices.tolist(), ref[i].data.tolist()))
        assert g.keys() == r.keys(), f"row {i}: different features"
        assert max((abs(g[k] - r[k]) for k in g), default=0.0) <= 1e-5, f"row {i}"


def test_bow_counts_times_idf_reproduce_tfidf(fixture_embedder, fixture_texts, expected_tfidf):
    """The reference's raw BoW counts, weighted by the model's idf and L2-normalised by
    numpy, give our TF-IDF: checks counting and weighting independently of our code."""
    e = expected_tfidf
    bow = sp.csr_matrix((e["bow_data"].astype(np.float64), e["bow_indices"], e["bow_indptr"]), shape=tuple(e["shape"]))
    weighted = bow.multiply(fixture_embedder.idf.astype(np.float64)[None, :]).tocsr()
    norms = np.sqrt(weighted.multiply(weighted).sum(axis=1)).A1
    norms[norms == 0] = 1.0
    want = sp.diags(1.0 / norms) @ weighted
    got = fixture_embedder.tfidf(fixture_texts[:20]).astype(np.float64)
    assert abs(got - want).max() <= 1e-6


def test_network_matches_numpy_forward(fixture_embedder, fixture_texts, expected):
    """An independent numpy forward pass of the stored layers over our TF-IDF."""
    x = fixture_embedder.tfidf(fixture_texts).toarray().astype(np.float64)
    layers = [w.astype(np.float64) for w in fixture_embedder.layers]
    for i, w in enumerate(layers):
        x = x @ w.T
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
        n = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(n == 0, 1.0, n)
    assert np.abs(x - expected).max() <= 1e-5
    assert np.abs(x - fixture_embedder(fixture_texts)).max() <= 1e-5


def test_module_level_embed_uses_cached_model(fixture_model_path, fixture_texts, expected):
    a = luxical.embed(fixture_texts[:10], model=fixture_model_path)
    assert luxical.load(fixture_model_path) is luxical.load(str(fixture_model_path))
    assert np.abs(a - expected[:10]).max() <= 1e-5
