"""Real documents to time on.

Preferred: the project's benchmark corpus built by ../shared/data/build_bench_corpus.py
(`short.parquet`: Debian package descriptions, ~94 tokens; `long.parquet`: documentation
chunks, ~1.2k tokens), found in $LUXICAL_BENCH_DIR or bench/data/. Fallback: the short and
long documents of the reference fixtures (real text too, but few of them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LUXICAL_SHARED_DIR", REPO.parent / "shared"))
BENCH_DIR = Path(os.environ.get("LUXICAL_BENCH_DIR", REPO / "bench" / "data"))
FIXTURE_MODEL = SHARED / "fixtures" / "reference" / "small_model.npz"


def load_corpora(n_short: int = 4000, n_long: int = 400) -> tuple[dict[str, list[str]], str]:
    """Returns ({"short": [...], "long": [...]}, description of the source)."""
    short_path, long_path = BENCH_DIR / "short.parquet", BENCH_DIR / "long.parquet"
    if short_path.is_file() and long_path.is_file():
        import pyarrow.parquet as pq

        short = pq.read_table(short_path, columns=["text"]).column("text").to_pylist()[:n_short]
        long = pq.read_table(long_path, columns=["text"]).column("text").to_pylist()[:n_long]
        return {"short": short, "long": long}, f"bench corpus in {BENCH_DIR}"
    rows = [json.loads(line) for line in open(SHARED / "fixtures" / "reference" / "inputs.jsonl", encoding="utf-8")]
    short = [r["text"] for r in rows if r["kind"] == "short"]
    long = [r["text"] for r in rows if r["kind"] == "long"]
    reps_s, reps_l = max(1, n_short // len(short)), max(1, n_long // len(long))
    return {"short": short * reps_s, "long": long * reps_l}, "reference fixture documents (bench corpus not built)"
