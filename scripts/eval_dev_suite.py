#!/usr/bin/env python3
"""Scores a Luxical model on the development quality suite (MODEL.md's table).

Usage:
  python scripts/eval_dev_suite.py [MODEL.npz] [--suite DIR] [--precision float32|int8] [--json OUT]

Without MODEL the shipped default model is scored. The suite is the one
scripts/eval/build_dev_suite.py builds (default .data/eval/dev in the repository);
scripts/eval/evaluate.py scores it. Prints each task's main metric and the mean.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVALUATOR = REPO / "scripts" / "eval" / "evaluate.py"


def load_evaluator():
    """scripts/eval/evaluate.py as a module (by path: the name `evaluate` may belong to
    an installed package)."""
    spec = importlib.util.spec_from_file_location("luxical_dev_evaluate", EVALUATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    evaluator = load_evaluator()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", type=Path, help="model file (default: the shipped default model)")
    ap.add_argument("--suite", type=Path, default=evaluator.DEFAULT_SUITE, help="suite folder (default: %(default)s)")
    ap.add_argument("--precision", default="float32", choices=["float32", "int8"])
    ap.add_argument("--json", type=Path, help="write every metric here")
    args = ap.parse_args()
    import luxical

    model = luxical.load(args.model, precision=args.precision)
    try:
        res = evaluator.evaluate(lambda texts: model(texts), args.suite, verbose=False)
    except FileNotFoundError as exc:
        sys.exit(str(exc))
    print(f"{model!r} ({args.model or 'default model'}, {args.precision})")
    print("| task | main |\n|---|---|")
    for task, r in res.items():
        if task != "_summary":
            print(f"| {task} | {r['main']:.4f} |")
    print(f"| **mean** | **{res['_summary']['mean_main']:.4f}** |")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
