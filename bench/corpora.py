"""Real documents to time on.

Preferred: the benchmark corpus built by scripts/data/build_bench_corpus.py
(`short.parquet`: Debian package descriptions, ~94 tokens; `long.parquet`: documentation
chunks, ~1.2k tokens), found in $LUXICAL_BENCH_DIR or bench/data/. Fallback: the
repository's real-text sample (tests/data/real_texts.jsonl.xz: package descriptions and
documentation chunks), so the benchmarks run on a clean clone too.
"""

from __future__ import annotations

import json
import lzma
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(os.environ.get("LUXICAL_BENCH_DIR", REPO / "bench" / "data"))
FIXTURE_MODEL = REPO / "tests" / "fixtures" / "reference" / "small_model.npz"
SAMPLE = REPO / "tests" / "data" / "real_texts.jsonl.xz"


def load_corpora(n_short: int = 4000, n_long: int = 400) -> tuple[dict[str, list[str]], str]:
    """Returns ({"short": [...], "long": [...]}, description of the source)."""
    short_path, long_path = BENCH_DIR / "short.parquet", BENCH_DIR / "long.parquet"
    if short_path.is_file() and long_path.is_file():
        import pyarrow.parquet as pq

        short = pq.read_table(short_path, columns=["text"]).column("text").to_pylist()[:n_short]
        long = pq.read_table(long_path, columns=["text"]).column("text").to_pylist()[:n_long]
        return {"short": short, "long": long}, f"bench corpus in {BENCH_DIR}"
    with lzma.open(SAMPLE, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    short = [r["text"] for r in rows if r["kind"] == "short"][:n_short]
    long = [r["text"] for r in rows if r["kind"] == "long"][:n_long]
    return {"short": short, "long": long}, f"repository text sample {SAMPLE.relative_to(REPO)} (bench corpus not built)"
