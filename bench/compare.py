#!/usr/bin/env python3
"""Side-by-side throughput: luxical (this package) vs the reference luxical 1.1.2.

All run in fresh subprocesses pinned (sched_setaffinity) to the same `threads` CPUs, on
the same model file and documents, alternating ours / ours-int8 / reference for each
repeat; the table gives the median docs/s and MB/s of each and the ratios, the lowest
row cosine between ours (exact float32 path) and the reference, and between our int8
path and our exact path. Ours loads with its weight cache (memory-mapped weights, in a
temporary directory: the first worker writes it, the rest map it). A second table gives
load times. The reference is imported from its own install target (default .reference/,
see scripts/test.sh).

Usage:
  .venv/bin/python bench/compare.py [--model PATH] [--threads 1 2] [--repeats 5]
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
from corpora import FIXTURE_MODEL, REPO, load_corpora  # noqa: E402

WORKER = r"""
import json, os, sys, time, resource
impl, model, texts_path, threads, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
texts = json.load(open(texts_path))
t0 = time.perf_counter()
if impl.startswith("ours"):
    import luxical
    e = luxical.Embedder.load(model, mmap=impl != "ours-private", precision="int8" if impl == "ours-int8" else "float32")
    run = lambda: e(texts, num_threads=threads)
else:
    from luxical.embedder import Embedder
    e = Embedder.load(model)
    run = lambda: e(texts)
load_s = time.perf_counter() - t0
import numpy as np
out = run()  # warm-up (JIT compile for the reference)
times = []
for _ in range(repeats):
    t = time.perf_counter(); out = run(); times.append(time.perf_counter() - t)
np.save(texts_path + "." + impl + ".npy", out)
print(json.dumps({"times": times, "load_s": load_s, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_worker(impl: str, model: Path, texts_path: str, threads: int, repeats: int, reference: Path, cache: str) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env["LUXICAL_CACHE_DIR"] = cache
    env.pop("PYTHONPATH", None)
    if impl == "reference":
        env["PYTHONPATH"] = str(reference)
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, impl, str(model), texts_path, str(threads), str(repeats)],
        env=env, capture_output=True, text=True, cwd=tempfile.gettempdir(),
    )
    if proc.returncode != 0:
        raise SystemExit(f"{impl} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=FIXTURE_MODEL)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--short", type=int, default=4000, help="number of short documents")
    ap.add_argument("--long", type=int, default=400, help="number of long documents")
    ap.add_argument("--reference", type=Path, default=REPO / ".reference")
    args = ap.parse_args()
    args.model = args.model.resolve()  # the workers run in a temporary directory
    import numpy as np

    corpora, source = load_corpora(args.short, args.long)
    print(f"model: {args.model.name}; documents: {source}; cpus: {os.cpu_count()}\n")
    print(
        "| docs | threads | ours docs/s | reference docs/s | ratio | ours int8 docs/s | int8 / ours | "
        "ours MB/s | reference MB/s | ours peak RSS MB | ref peak RSS MB | min cos ours-ref | min cos int8-ours |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    loads: dict[str, list[float]] = {"ours-private": [], "ours (cold cache)": [], "ours (mapped)": [], "reference": []}
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "weights")
        for kind, texts in corpora.items():
            path = os.path.join(tmp, f"{kind}.json")
            Path(path).write_text(json.dumps(texts))
            n_bytes = sum(len(t.encode()) for t in texts)
            for threads in args.threads:
                ours_t, int8_t, ref_t, rss = [], [], [], {}
                for _ in range(2):  # alternate: ours, int8, reference, ours, int8, reference
                    first = not os.path.isdir(cache)
                    o = run_worker("ours", args.model, path, threads, args.repeats, args.reference, cache)
                    q = run_worker("ours-int8", args.model, path, threads, args.repeats, args.reference, cache)
                    r = run_worker("reference", args.model, path, threads, args.repeats, args.reference, cache)
                    ours_t += o["times"]
                    int8_t += q["times"]
                    ref_t += r["times"]
                    rss = {"ours": o["rss_mb"], "reference": r["rss_mb"]}
                    loads["ours (cold cache)" if first else "ours (mapped)"].append(o["load_s"])
                    loads["reference"].append(r["load_s"])
                if not loads["ours-private"]:
                    loads["ours-private"].append(
                        run_worker("ours-private", args.model, path, threads, 1, args.reference, cache)["load_s"]
                    )
                ours, ref, int8 = (np.load(f"{path}.{i}.npy") for i in ("ours", "reference", "ours-int8"))
                mo, mq, mr = statistics.median(ours_t), statistics.median(int8_t), statistics.median(ref_t)
                print(
                    f"| {kind} ({len(texts)}) | {threads} | {len(texts) / mo:,.0f} | {len(texts) / mr:,.0f} | "
                    f"{mr / mo:.2f}x | {len(texts) / mq:,.0f} | {mo / mq:.2f}x | "
                    f"{n_bytes / mo / 1e6:.2f} | {n_bytes / mr / 1e6:.2f} | "
                    f"{rss['ours']:.0f} | {rss['reference']:.0f} | {min_cosine(ours, ref):.6f} | "
                    f"{min_cosine(int8, ours):.5f} |",
                    flush=True,
                )
    print("\n| load | median s | runs |\n|---|---|---|")
    for name, xs in loads.items():
        if xs:
            print(f"| {name} | {statistics.median(xs):.2f} | {len(xs)} |")


def min_cosine(a, b) -> float:
    """Lowest cosine between matching rows (rows that are zero in both count as 1)."""
    import numpy as np

    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both = (na > 0) & (nb > 0)
    cos = np.ones(len(a))
    cos[both] = np.sum(a[both] * b[both], axis=1) / (na[both] * nb[both])
    cos[(na > 0) != (nb > 0)] = 0.0
    return float(cos.min())


if __name__ == "__main__":
    main()
