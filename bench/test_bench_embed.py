"""End-to-end embedding throughput (pytest-benchmark; off in the test run).

Run: .venv/bin/python -m pytest bench --benchmark-enable -q
Each case records docs/s, MB/s, threads and whether the output was correct (unit-norm or
zero rows, bitwise equal to a single-threaded run) in `extra_info`.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["short", "long"])
def test_embed_end_to_end(benchmark, fixture_embedder, corpora, kind, threads):
    texts = corpora[kind]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    benchmark.group = f"embed-{kind}"
    out = benchmark.pedantic(fixture_embedder, args=(texts,), kwargs={"num_threads": threads}, rounds=5, warmup_rounds=1)
    median = benchmark.stats.stats.median
    norms = np.linalg.norm(out, axis=1)
    correct = bool(
        np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
        and np.array_equal(out, fixture_embedder(texts, num_threads=1))
    )
    benchmark.extra_info.update(
        threads=threads,
        n_docs=len(texts),
        docs_per_s=round(len(texts) / median, 1),
        mb_per_s=round(n_bytes / median / 1e6, 3),
        correct=correct,
    )
    assert correct
