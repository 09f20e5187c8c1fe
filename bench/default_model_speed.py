#!/usr/bin/env python3
"""Throughput of the shipped default model (the speed table of MODEL.md).

Median of --repeats timed calls of ``luxical.embed(texts, num_threads=T)`` after one
warm-up, on the bench corpus (bench/corpora.py: short Debian descriptions, long
documentation chunks).

Usage:
  .venv/bin/python bench/default_model_speed.py [--threads 1 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from corpora import load_corpora  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import luxical

    corpora, source = load_corpora()
    model = luxical.load()
    print(f"default model {model!r}; {source}")
    print("| documents | threads | docs/s | MB/s |\n|---|---|---|---|")
    for name, texts in corpora.items():
        mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        for threads in args.threads:
            luxical.embed(texts, num_threads=threads)
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                luxical.embed(texts, num_threads=threads)
                times.append(time.perf_counter() - t)
            med = statistics.median(times)
            print(f"| {name} ({len(texts)}) | {threads} | {len(texts) / med:,.0f} | {mb / med:.1f} |", flush=True)


if __name__ == "__main__":
    main()
