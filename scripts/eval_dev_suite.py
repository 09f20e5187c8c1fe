#!/usr/bin/env python3
"""Scores a Luxical model on the development quality suite (../shared/eval, evaluate.py).

Usage:
  python scripts/eval_dev_suite.py [MODEL.npz] [--suite DIR] [--precision float32|int8]

Without MODEL the shipped default model is scored. Prints each task's main metric and
the mean, as in MODEL.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", type=Path, help="model file (default: the shipped default model)")
    ap.add_argument("--suite", type=Path, default=REPO.parent / "shared" / "eval")
    ap.add_argument("--precision", default="float32", choices=["float32", "int8"])
    args = ap.parse_args()
    import luxical

    sys.path.insert(0, str(args.suite))
    from evaluate import evaluate

    model = luxical.load(args.model, precision=args.precision)
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):  # the evaluator's progress lines
        res = evaluate(lambda texts: model(texts), str(args.suite))
    print(f"{model!r} ({args.model or 'default model'}, {args.precision})")
    print("| task | main |\n|---|---|")
    for task, r in res.items():
        if task != "_summary":
            print(f"| {task} | {r['main']:.4f} |")
    print(f"| **mean** | **{res['_summary']['mean_main']:.4f}** |")


if __name__ == "__main__":
    main()
