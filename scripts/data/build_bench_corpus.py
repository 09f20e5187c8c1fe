#!/usr/bin/env python3
"""Build the benchmark corpora (speed only): bench/data/short.parquet and long.parquet.

* short: every English Debian package description of the apt index (synopsis + ". " +
  long description; ~61k distinct documents, ~90 tokens each), as in scripts/data/build_test_texts.py.
* long: 1,800 prose chunks of 500-1,000 words (~1,100 tokens each) from the documentation
  packages linux-doc-6.1, python3.11-doc and perl-doc, converted and chunked by the same
  code as the test sample.

Columns `id`, `text`; a fixed-seed shuffle, so the same package versions give the same
files. For timing only: the package descriptions are also a source of the dev quality
suite, so never train on them. bench/corpora.py reads the files from bench/data/ (or
$LUXICAL_BENCH_DIR).

Usage: python3 scripts/data/build_bench_corpus.py [--out-dir bench/data] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_test_texts as texts  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SEED = 0
N_LONG = 1_800  # the three packages give ~1,850 chunks of 500-1,000 words; the benchmarks use 400


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=REPO / "bench" / "data")
    ap.add_argument("--work", type=Path, default=texts.DEFAULT_WORK, help="download/unpack cache")
    ap.add_argument("--n-long", type=int, default=N_LONG)
    args = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.time()
    shorts, short_info = texts.short_texts()
    texts.MIN_WORDS, texts.MAX_WORDS = 500, 1000  # long documents of 500-1,000 words
    longs, long_info = texts.long_texts(args.work)
    if len(longs) < args.n_long:
        raise SystemExit(f"only {len(longs)} long chunks of 500-1,000 words; asked for {args.n_long}")
    # (source, {"text": ..., ...}) rows of the sample builder -> (id, text)
    shorts = [(source, row["text"]) for source, row in shorts]
    longs = [(source, row["text"]) for source, row in longs]
    rng = random.Random(SEED)
    rng.shuffle(shorts)
    longs = rng.sample(longs, args.n_long)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("short", shorts), ("long", longs)):
        table = pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows]})
        pq.write_table(table, args.out_dir / f"{name}.parquet", compression="zstd")
    stats = {
        "short": {"docs": len(shorts), "chars": sum(len(t) for _, t in shorts), **short_info},
        "long": {"docs": len(longs), "chars": sum(len(t) for _, t in longs), "sources": long_info},
        "seconds": round(time.time() - t0, 1),
    }
    (args.out_dir / "corpus_stats.json").write_text(json.dumps(stats, indent=1))
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
