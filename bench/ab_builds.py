#!/usr/bin/env python3
"""Two builds of luxical side by side: alternating fresh processes, same model, same
documents, each build imported from its own folder (a wheel unpacked with
``python -m zipfile -e luxical-*.whl DIR``, or a copy of the installed package with
another ``_luxical.abi3.so`` in it). Prints docs/s per round and the medians.

  .venv/bin/python bench/ab_builds.py --a /tmp/before --b /tmp/after \\
      [--model bench/data/one_shaped.npz] [--kind long] [--threads 1] [--rounds 3]

Each build gets its own weight-cache folder (a cache file written by one build must not
decide how the other maps it: the page cache keeps the folio sizes of whoever read it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from corpora import load_corpora  # noqa: E402

WORKER = r"""
import json, sys, time
import luxical
model, texts_path, threads, repeats, table = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
texts = json.load(open(texts_path))
e = luxical.Embedder.load(model, mmap=True, first_layer_dtype=table)
e(texts, num_threads=threads)
times = []
for _ in range(repeats):
    t = time.perf_counter(); e(texts, num_threads=threads); times.append(time.perf_counter() - t)
print(json.dumps({"docs_per_s": len(texts) / sorted(times)[len(times) // 2], "file": luxical.__file__}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", type=Path, required=True, help="folder holding build A's luxical package")
    ap.add_argument("--b", type=Path, required=True, help="folder holding build B's luxical package")
    ap.add_argument("--model", type=Path, default=Path(__file__).parent / "data" / "one_shaped.npz")
    ap.add_argument("--kind", choices=["short", "long"], default="long")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per process (median)")
    ap.add_argument("--table", choices=["float32", "float16"], default="float32")
    args = ap.parse_args()
    corpora, source = load_corpora(4000, 400)
    texts = corpora[args.kind]
    print(f"model: {args.model.name}; {len(texts)} {args.kind} documents from {source}; {args.threads} thread(s)")
    results: dict[str, list[float]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as tmp:
        texts_path = os.path.join(tmp, "texts.json")
        Path(texts_path).write_text(json.dumps(texts))
        for r in range(args.rounds):
            for name, folder in (("A", args.a), ("B", args.b)):
                env = dict(os.environ, PYTHONPATH=str(folder.resolve()), LUXICAL_CACHE_DIR=os.path.join(tmp, name))
                proc = subprocess.run(
                    [sys.executable, "-c", WORKER, str(args.model.resolve()), texts_path, str(args.threads),
                     str(args.repeats), args.table],
                    env=env, capture_output=True, text=True, cwd=tmp,
                )
                if proc.returncode != 0:
                    raise SystemExit(f"build {name} failed:\n{proc.stderr}")
                out = json.loads(proc.stdout.strip().splitlines()[-1])
                if not out["file"].startswith(str(folder.resolve())):
                    raise SystemExit(f"build {name} imported {out['file']}, not from {folder}")
                results[name].append(out["docs_per_s"])
                print(f"round {r + 1} {name}: {out['docs_per_s']:,.0f} docs/s", flush=True)
    a, b = statistics.median(results["A"]), statistics.median(results["B"])
    print(f"median A {a:,.0f}, B {b:,.0f} docs/s: B/A {b / a:.3f}")


if __name__ == "__main__":
    main()
