#!/usr/bin/env python3
"""Builds a Luxical-One-shaped model for speed tests: the largest n-gram vocabulary (up to
2M 1..5-grams seen at least twice) that a corpus supports, BERT-uncased tokenizer, random
weights 96 → 3072 → 3072 → 192 (speed does not depend on their values).

    .venv/bin/python bench/make_one_shaped.py CORPUS.parquet [...] --out bench/data/one_shaped.npz

CORPUS: the training corpus of scripts/data/build_corpus.py (or any Parquet/JSONL/text).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import luxical
from luxical.training.data import read_texts
from luxical.training.vocab import count_ngrams, select_vocabulary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--vocab-size", type=int, default=2_000_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[96, 3072, 3072, 192])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    texts = read_texts(args.corpus)
    tokenizer_json = luxical.load().tokenizer_json  # BERT-uncased, truncation/padding off
    summary = count_ngrams(texts, tokenizer_json, max_ngram_len=5, capacity=2 * args.vocab_size, progress=True)
    vocab = select_vocabulary(summary, None, tokenizer_json, vocab_size=args.vocab_size, min_count=2, idf="pseudo")
    rng = np.random.default_rng(args.seed)
    dims = [len(vocab), *args.dims]
    layers = [
        (rng.standard_normal((o, i), dtype=np.float32) / np.sqrt(i)).astype(np.float32)
        for i, o in zip(dims[:-1], dims[1:])
    ]
    model = luxical.Embedder.from_arrays(
        tokenizer_json=tokenizer_json, ngrams=vocab.ngrams, idf=vocab.idf, layers=layers
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    print(f"{model!r} from {len(texts):,} documents in {time.perf_counter() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
