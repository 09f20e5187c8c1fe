#!/usr/bin/env python3
"""Embeds the bench corpus repeatedly, for a profiler to watch (stage breakdown).

  .venv/bin/maturin develop --profile profiling        # release speed + symbols
  perf record -F 1999 -g -o perf.short .venv/bin/python bench/profile_embed.py --kind short
  perf report -i perf.short --no-children --sort symbol -g none
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from corpora import load_corpora  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--model", type=Path, default=Path(__file__).parent / "data" / "one_shaped.npz")
ap.add_argument("--kind", choices=["short", "long"], default="short")
ap.add_argument("--precision", choices=["float32", "int8"], default="float32")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--repeats", type=int, default=4)
args = ap.parse_args()

import luxical  # noqa: E402

texts = load_corpora(4000, 400)[0][args.kind]
emb = luxical.Embedder.load(args.model, mmap=True, precision=args.precision)
emb(texts[:100], num_threads=args.threads)
for _ in range(args.repeats):
    emb(texts, num_threads=args.threads)
