"""Per-stage throughput (pytest-benchmark; off in the test run): tokenization (ours vs
the Hugging Face `tokenizers` package on the same tokenizer.json, side by side in one
group) and tokenize + n-gram features + TF-IDF. The network's share is end-to-end
(`test_bench_embed.py`) minus the TF-IDF stage.

Run: .venv/bin/python -m pytest bench --benchmark-enable -q
"""

from __future__ import annotations

import numpy as np
import pytest


def _record(benchmark, texts, threads, correct, **extra):
    median = benchmark.stats.stats.median
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    benchmark.extra_info.update(
        threads=threads, n_docs=len(texts), docs_per_s=round(len(texts) / median, 1),
        mb_per_s=round(n_bytes / median / 1e6, 3), correct=correct, **extra,
    )


@pytest.fixture(scope="session")
def hf_tokenizer(fixture_embedder):
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer.from_str(fixture_embedder.tokenizer_json)
    hf.no_truncation()
    hf.no_padding()
    return hf


@pytest.mark.parametrize("impl", ["luxical", "hf-tokenizers"])
@pytest.mark.parametrize("kind", ["short", "long"])
def test_tokenize_one_thread(benchmark, fixture_embedder, hf_tokenizer, corpora, kind, impl):
    texts = corpora[kind]
    benchmark.group = f"tokenize-{kind}-1thread"
    if impl == "luxical":
        run = lambda: fixture_embedder.tokenize(texts, num_threads=1, max_tokens=None)  # noqa: E731
    else:
        run = lambda: [hf_tokenizer.encode(t, add_special_tokens=False) for t in texts]  # noqa: E731
    out = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    ours = fixture_embedder.tokenize(texts, max_tokens=None)
    theirs = hf_tokenizer.encode_batch(texts, add_special_tokens=False)
    correct = all(np.array_equal(o, np.asarray(t.ids, dtype=np.uint32)) for o, t in zip(ours, theirs))
    _record(benchmark, texts, 1, correct, impl=impl, n_outputs=len(out))
    assert correct


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["short", "long"])
def test_tfidf(benchmark, fixture_embedder, corpora, kind, threads):
    pytest.importorskip("scipy")
    texts = corpora[kind]
    benchmark.group = f"tfidf-{kind}"
    out = benchmark.pedantic(fixture_embedder.tfidf, args=(texts,), kwargs={"num_threads": threads}, rounds=5, warmup_rounds=1)
    norms = np.sqrt(np.asarray(out.multiply(out).sum(axis=1))).ravel()
    correct = bool(np.all((np.abs(norms - 1) < 1e-5) | (norms == 0)))
    _record(benchmark, texts, threads, correct)
    assert correct
