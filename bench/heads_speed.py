"""Heads on vs off, alternating runs in one process: prints a markdown table.

Same models, documents and heads as `test_bench_heads.py` (a quality score, a 58-class
softmax probe, 40 domain centroids; the default model and a Luxical-One-shaped network),
short documents of the bench corpus. Each row: median docs/s of `--repeats` runs of each
mode, the modes alternating so that load on a shared machine hits both alike.

Run: .venv/bin/python bench/heads_speed.py [--repeats 7] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpora import FIXTURE_MODEL, load_corpora  # noqa: E402
from test_bench_heads import bench_models, curation_heads  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--docs", type=int, default=4000)
    args = p.parse_args()

    import luxical

    corpora, source = load_corpora()
    texts = corpora["short"][: args.docs]
    print(f"{len(texts)} short documents ({source}); luxical.cpu_info: {luxical.cpu_info()['float32_kernel']}")
    print("| model | heads | threads | embed only docs/s | embed + heads docs/s | ratio |")
    print("|---|---|---|---|---|---|")
    for name, model in bench_models(luxical.Embedder.load(FIXTURE_MODEL)).items():
        quality, topic, domains = curation_heads(model, corpora["short"][:2000])
        sets = {
            "quality + 40 centroids": [quality, domains],
            "58-class probe": [topic],
            "all three (99 outputs)": [quality, topic, domains],
        }
        for (label, heads), threads in ((s, t) for s in sets.items() for t in args.threads):
            scored = model.with_heads(*heads)
            model(texts, num_threads=threads)
            scored(texts, num_threads=threads)  # warm-up
            off, on = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                model(texts, num_threads=threads)
                off.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                scored(texts, num_threads=threads)
                on.append(time.perf_counter() - t0)
            d_off, d_on = len(texts) / np.median(off), len(texts) / np.median(on)
            print(f"| {name} {model.layer_dims} | {label} | {threads} | {d_off:,.0f} | {d_on:,.0f} | {d_on / d_off:.1%} |", flush=True)


if __name__ == "__main__":
    main()
