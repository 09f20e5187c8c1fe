"""Heads on vs off in one run (pytest-benchmark; off in the test run).

The same documents embedded by the same model with and without a typical curation set of
heads (:mod:`luxical.heads`): a quality score (linear, 1 output), a 58-class topic probe
(linear, softmax; the shape of a Debian-section probe) and 40 domain centroids. Two
models: the default model (29,523 → 385 → 385) and a Luxical-One-shaped network (the
fixture's vocabulary and tokenizer, random 32 → 3072 → 3072 → 192 weights; or
`bench/data/one_shaped.npz` when built). `extra_info` records docs/s, and for "on" the
largest difference of the head columns to numpy on the returned embeddings (`correct` =
≤ 1e-6). `bench/heads_speed.py` prints the on/off table with alternating runs.

Run: .venv/bin/python -m pytest bench/test_bench_heads.py --benchmark-enable -q
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ONE_SHAPED = Path(__file__).parent / "data" / "one_shaped.npz"


def curation_heads(model, sample: list[str]):
    """The heads timed: a quality score, a 58-class softmax probe, 40 spherical centroids."""
    from luxical import heads as H

    rng = np.random.default_rng(0)
    d = model.dim
    quality = H.LinearHead(rng.normal(size=(1, d)), [0.0], labels=["score"], name="quality")
    topic = H.LinearHead(
        rng.normal(size=(58, d)) * 3, rng.normal(size=58), labels=[f"s{i}" for i in range(58)], activation="softmax", name="topic"
    )
    domains = H.fit_centroids(model(sample), 40, name="domain")
    return [quality, topic, domains]


def bench_models(fixture_embedder):
    import luxical

    if ONE_SHAPED.is_file():
        one = luxical.Embedder.load(ONE_SHAPED)
    else:
        rng = np.random.default_rng(0)
        dims = [fixture_embedder.vocab_size, fixture_embedder.layer_dims[1], 3072, 3072, 192]
        layers = [fixture_embedder.layers[0]] + [
            (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32) for i, o in zip(dims[1:-1], dims[2:])
        ]
        one = luxical.Embedder.from_arrays(
            tokenizer_json=fixture_embedder.tokenizer_json, ngrams=fixture_embedder.ngrams, idf=fixture_embedder.idf, layers=layers
        )
    return {"default": luxical.load(), "one-shaped": one}


@pytest.fixture(scope="session")
def head_models(fixture_embedder, corpora):
    out = {}
    for name, model in bench_models(fixture_embedder).items():
        out[name] = (model, model.with_heads(*curation_heads(model, corpora["short"][:2000])))
    return out


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mode", ["off", "on"])
@pytest.mark.parametrize("model_name", ["default", "one-shaped"])
def test_heads_on_vs_off(benchmark, head_models, corpora, model_name, mode, threads):
    plain, with_heads = head_models[model_name]
    texts = corpora["short"][:4000]
    model = plain if mode == "off" else with_heads
    benchmark.group = f"heads-{model_name}-short-{threads}thread"
    out = benchmark.pedantic(model, args=(texts,), kwargs={"num_threads": threads}, rounds=5, warmup_rounds=1)
    median = benchmark.stats.stats.median
    info = {"model": model_name, "mode": mode, "threads": threads, "n_docs": len(texts), "docs_per_s": round(len(texts) / median, 1)}
    if mode == "on":
        err = 0.0
        for h in with_heads.heads:
            for c, want in h.apply(out.embeddings).items():
                if not c.endswith("_id"):
                    err = max(err, float(np.max(np.abs(out[c] - want) / np.maximum(1.0, np.abs(want)))))
        info.update(max_error_to_numpy=err, correct=err <= 1e-6)
        assert err <= 1e-6
    benchmark.extra_info.update(info)
