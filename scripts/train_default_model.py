#!/usr/bin/env python3
"""Trains the default model shipped in the package (python/luxical/models/default.npz).

The recipe is the package's own (`luxical.training.recipe.train`, what `luxical train`
runs; MODEL.md describes each step); this script only fixes the default model's settings:

 1. corpus, two parts, each shuffled with seed 0: the output of scripts/data/build_corpus.py
    (Debian documentation, 92k docs; default .data/corpus/shard-*.parquet) and of
    scripts/data/build_general_corpus.py (general English, 31k passages; default
    .data/general/shard-*.parquet); IDF over all of both;
 2. teacher all-MiniLM-L6-v2 on the first --docs (42,000) documentation documents and all
    general passages (256 tokens), the last --holdout (2,000) of each part held back, and on
    the shipped English word list;
 3. fit, whitening (power 0.6), float16 first layer; the health report beside the model.

Usage (the corpus needs the dev suite first, for its overlap filter; see MODEL.md):
  python scripts/eval/build_dev_suite.py      # -> .data/eval/dev
  python scripts/data/build_corpus.py         # -> .data/corpus/shard-*.parquet
  python scripts/data/build_general_corpus.py # -> .data/general/shard-0000.parquet
  python scripts/train_default_model.py [--corpus .data/corpus/shard-*.parquet]
      [--work .data/cache/train] --out OUT.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

TEACHER = "all-MiniLM-L6-v2"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO / ".data" / "corpus"  # scripts/data/build_corpus.py's default output
DEFAULT_GENERAL = REPO / ".data" / "general"  # scripts/data/build_general_corpus.py's default output
DEFAULT_WORK = REPO / ".data" / "cache" / "train"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", nargs="+", type=Path, help=f"corpus shards (default: {DEFAULT_CORPUS}/shard-*.parquet)")
    ap.add_argument("--general", nargs="*", type=Path,
                    help=f"general-English part (default: {DEFAULT_GENERAL}/shard-*.parquet; none: --general with no file)")
    ap.add_argument("--general-docs", type=int, default=100_000, help="general-English documents to fit on (at most)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="teacher caches (default: %(default)s)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--words", default="english", help="word list: english (shipped), corpus, none or a file")
    ap.add_argument("--docs", type=int, default=42_000, help="teacher-embedded corpus documents to fit on")
    ap.add_argument("--windows", type=int, default=40_000, help="sentence-sized windows of documentation documents (teacher-embedded)")
    ap.add_argument("--general-windows", type=int, default=40_000, help="sentence-sized windows of general-English passages")
    ap.add_argument("--holdout", type=int, default=2_000, help="of those, held back to report the fit")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--word-weight", type=float, default=1.0)
    ap.add_argument("--whiten", type=float, default=0.6, help="whitening power (see whitening_projection)")
    ap.add_argument("--first-layer-dtype", default="float16", choices=["float16", "float32"])
    ap.add_argument("--teacher-precision", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--seed", type=int, default=0, help="seeds the shuffle, the fit's batch order and word draws")
    ap.add_argument("--device", default=None, help="teacher device (cpu, cuda, ...)")
    args = ap.parse_args()
    if not args.corpus:
        args.corpus = sorted(DEFAULT_CORPUS.glob("shard-*.parquet"))
        if not args.corpus:
            ap.error(f"no corpus in {DEFAULT_CORPUS}: run scripts/data/build_corpus.py or pass --corpus")

    if args.general is None:
        args.general = sorted(DEFAULT_GENERAL.glob("shard-*.parquet"))
        if not args.general:
            ap.error(f"no general-English corpus in {DEFAULT_GENERAL}: run scripts/data/build_general_corpus.py, "
                     "pass --general FILES, or --general alone for none")
    corpus = {"debian-docs": args.corpus, "general": args.general} if args.general else args.corpus
    max_docs = {"debian-docs": args.docs, "general": args.general_docs} if args.general else args.docs
    windows = {"debian-docs": args.windows, "general": args.general_windows} if args.general else args.windows

    from luxical.training.recipe import train

    model, report = train(
        corpus, TEACHER, args.out, max_docs=max_docs, holdout=args.holdout, windows=windows, words=args.words,
        epochs=args.epochs, lr=args.lr, word_weight=args.word_weight, whiten=args.whiten,
        first_layer_dtype=args.first_layer_dtype, teacher_precision=args.teacher_precision, work_dir=args.work,
        seed=args.seed, device=args.device,
    )
    cos = report["fit"]["holdout_cos"]
    print(f"wrote {args.out}: {model!r}, {args.out.stat().st_size / 1e6:.1f} MB in {report['timings']['total_s']:.0f}s "
          f"(holdout cos {cos[0]:.3f} -> {cos[-1]:.3f})")


if __name__ == "__main__":
    main()
