"""The network stage and the int8 path (pytest-benchmark; off in the test run).

A network-bound model is built in memory: the fixture's vocabulary and tokenizer with
random weights of the Luxical-One hidden shape (32 -> 3072 -> 3072 -> 192), so that on
short documents most of the time is the dense layers. float32 and int8 run side by side
in one group; `extra_info` records docs/s, threads, and the lowest row cosine of int8 to
float32 (`correct` = cosine >= 0.999). Loading: private vs memory-mapped weight cache, on
the Luxical-One-shaped file when `bench/data/one_shaped.npz` exists (see
`make_one_shaped.py`).

Run: .venv/bin/python -m pytest bench --benchmark-enable -q
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ONE_SHAPED = Path(__file__).parent / "data" / "one_shaped.npz"


@pytest.fixture(scope="session")
def wide_models(fixture_embedder):
    import luxical

    rng = np.random.default_rng(0)
    d0 = fixture_embedder.layer_dims[1]
    dims = [fixture_embedder.vocab_size, d0, 3072, 3072, 192]
    layers = [fixture_embedder.layers[0]] + [
        (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32) for i, o in zip(dims[1:-1], dims[2:])
    ]
    exact = luxical.Embedder.from_arrays(
        tokenizer_json=fixture_embedder.tokenizer_json,
        ngrams=fixture_embedder.ngrams,
        idf=fixture_embedder.idf,
        layers=layers,
    )
    return {"float32": exact, "int8": exact.with_precision("int8")}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_network_bound_short_docs(benchmark, wide_models, corpora, precision, threads):
    texts = corpora["short"][:2000]
    model = wide_models[precision]
    benchmark.group = f"precision-short-{threads}thread"
    out = benchmark.pedantic(model, args=(texts,), kwargs={"num_threads": threads}, rounds=5, warmup_rounds=1)
    exact = wide_models["float32"](texts, num_threads=threads)
    nonzero = np.linalg.norm(exact, axis=1) > 0
    cos = float(np.min(np.sum(out[nonzero] * exact[nonzero], axis=1))) if nonzero.any() else 1.0
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(
        precision=precision, threads=threads, n_docs=len(texts),
        docs_per_s=round(len(texts) / median, 1), min_cosine_to_float32=round(cos, 6), correct=cos >= 0.999,
    )
    assert cos >= 0.999


@pytest.mark.parametrize("mode", ["private", "mapped"])
def test_load_one_shaped(benchmark, mode, tmp_path_factory, monkeypatch):
    if not ONE_SHAPED.is_file():
        pytest.skip(f"{ONE_SHAPED} not built (bench/make_one_shaped.py builds it)")
    import luxical

    cache = tmp_path_factory.mktemp("weights")
    monkeypatch.setenv("LUXICAL_CACHE_DIR", str(cache))
    if mode == "mapped":
        luxical.Embedder.load(ONE_SHAPED, mmap=True)  # write the cache once
    benchmark.group = "load-one-shaped"
    emb = benchmark.pedantic(luxical.Embedder.load, args=(ONE_SHAPED,), kwargs={"mmap": mode == "mapped"}, rounds=3)
    benchmark.extra_info.update(mode=mode, weights_mapped=emb.weights_mapped, correct=emb.weights_mapped == (mode == "mapped"))
    assert emb.weights_mapped == (mode == "mapped")
