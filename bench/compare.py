#!/usr/bin/env python3
"""Side-by-side throughput: luxical (this package) vs the reference luxical 1.1.2.

All run in fresh subprocesses pinned (sched_setaffinity) to the same `threads` CPUs, on
the same model file and documents, alternating every path of ours and the reference, twice.
Our paths come from `--paths`: a precision (float32, int8, bfloat16), optionally a forced
kernel family (`@avx512`: LUXICAL_KERNEL) and a float16 first-layer table (`+f16`). The
table has a row per path and one for the reference, with the kernels that ran (hidden +
output layers, from `luxical.cpu_info()` in the worker) and the table's dtype, the median
docs/s and MB/s, the ratios to the reference and to our first path, peak RSS, and the
lowest row cosine to the reference and to our first path, and how much of the worker's
memory was mapped in 2 MiB pages (the n-gram table and the first layer are read at
random: with 4 KiB pages nearly every read also misses the TLB). The CPU's model name and the
features the kernels use head the output. Ours loads with its weight cache (memory-mapped
weights, in a temporary directory: each table dtype's first worker writes its entry, the
rest map it). A second table gives load times. The reference is imported from its own
install target (default .reference/, see scripts/test.sh).

Usage:
  .venv/bin/python bench/compare.py [--model PATH] [--threads 1 2] [--repeats 5]
      [--paths float32 int8 int8@avx512 int8+f16 bfloat16 ...]
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
table = sys.argv[6] if len(sys.argv) > 6 else "float32"
precision = sys.argv[7] if len(sys.argv) > 7 else "float32"
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
texts = json.load(open(texts_path))
t0 = time.perf_counter()
kernel = ""
if impl.startswith("ours"):
    import luxical
    e = luxical.Embedder.load(model, mmap=impl != "ours-private", precision=precision, first_layer_dtype=table)
    run = lambda: e(texts, num_threads=threads)
    info = luxical.cpu_info()
    hidden = {"float32": info["float32_kernel"], "int8": info["int8_kernel"], "bfloat16": info["bfloat16_kernel"]}
    kernel = info["float32_kernel"] if precision == "float32" else f"{hidden[precision]} + {info['float32_kernel']}"
    kernel += f", {e.first_layer_dtype} table"
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
huge_kb = None  # memory mapped in 2 MiB pages (anonymous + file), Linux only
if os.path.exists("/proc/self/smaps_rollup"):
    huge_kb = sum(int(line.split()[1]) for line in open("/proc/self/smaps_rollup")
                  if line.startswith(("AnonHugePages:", "FilePmdMapped:")))
print(json.dumps({"times": times, "load_s": load_s, "kernel": kernel, "huge_kb": huge_kb,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_worker(
    impl: str, model: Path, texts_path: str, threads: int, repeats: int, reference: Path, cache: str,
    kernel: str | None = None, table: str = "float32", precision: str = "float32",
) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env["LUXICAL_CACHE_DIR"] = cache
    env.pop("PYTHONPATH", None)
    env.pop("LUXICAL_KERNEL", None)
    if kernel:
        env["LUXICAL_KERNEL"] = kernel
    if impl == "reference":
        env["PYTHONPATH"] = str(reference)
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, impl, str(model), texts_path, str(threads), str(repeats), table, precision],
        env=env, capture_output=True, text=True, cwd=tempfile.gettempdir(),
    )
    if proc.returncode != 0:
        raise SystemExit(f"{impl} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_path(spec: str) -> tuple[str, str | None, str]:
    """``PRECISION[@KERNEL][+f16]`` -> (precision, LUXICAL_KERNEL value or None for the
    best, first-layer table dtype)."""
    spec, plus, table = spec.partition("+")
    if plus and table != "f16":
        raise SystemExit(f"--paths: {spec}+{table}: the only table option is +f16")
    precision, _, kernel = spec.partition("@")
    if precision not in ("float32", "int8", "bfloat16"):
        raise SystemExit(f"--paths: {spec!r}: precision must be float32, int8 or bfloat16")
    return precision, kernel or None, "float16" if plus else "float32"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=FIXTURE_MODEL)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--short", type=int, default=4000, help="number of short documents")
    ap.add_argument("--long", type=int, default=400, help="number of long documents")
    ap.add_argument("--reference", type=Path, default=REPO / ".reference")
    ap.add_argument(
        "--paths", nargs="+", default=["float32", "int8"],
        help="our paths, PRECISION[@KERNEL][+f16] (LUXICAL_KERNEL value, default: the best the CPU has; "
        "+f16: first-layer table in float16), e.g. float32 int8 int8@avx512 int8+f16; the first is "
        "the base of 'vs ours'",
    )
    args = ap.parse_args()
    args.model = args.model.resolve()  # the workers run in a temporary directory
    paths = [(spec, *parse_path(spec)) for spec in args.paths]
    import numpy as np

    import luxical

    corpora, source = load_corpora(args.short, args.long)
    info = luxical.cpu_info()
    features = ", ".join(name for name, present in info["features"].items() if present) or "none"
    print(f"model: {args.model.name}; documents: {source}; cpus: {os.cpu_count()}")
    print(f"CPU: {cpu_model()}; features: {features}\n")
    print(
        "| docs | threads | path | kernel (hidden + output layers) | docs/s | vs reference | vs ours "
        f"{paths[0][0]} | MB/s | peak RSS MB | in 2 MiB pages MB | min cos to reference | "
        f"min cos to ours {paths[0][0]} |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    loads: dict[str, list[float]] = {"ours-private": [], "ours (cold cache)": [], "ours (mapped)": [], "reference": []}
    cached_tables: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "weights")
        for kind, texts in corpora.items():
            path = os.path.join(tmp, f"{kind}.json")
            Path(path).write_text(json.dumps(texts))
            n_bytes = sum(len(t.encode()) for t in texts)
            for threads in args.threads:
                times: dict[str, list[float]] = {spec: [] for spec, _, _, _ in paths}
                times["reference"] = []
                last: dict[str, dict] = {}
                for _ in range(2):  # alternate: every path of ours, then the reference; twice
                    for spec, precision, kernel, table in paths:
                        first = table not in cached_tables  # each table dtype has its own cache entry
                        cached_tables.add(table)
                        impl = "ours"
                        w = run_worker(impl, args.model, path, threads, args.repeats, args.reference, cache, kernel, table, precision)
                        os.replace(f"{path}.{impl}.npy", f"{path}.{spec}.npy")
                        times[spec] += w["times"]
                        last[spec] = w
                        loads["ours (cold cache)" if first else "ours (mapped)"].append(w["load_s"])
                    r = run_worker("reference", args.model, path, threads, args.repeats, args.reference, cache)
                    times["reference"] += r["times"]
                    last["reference"] = r
                    loads["reference"].append(r["load_s"])
                if not loads["ours-private"]:
                    loads["ours-private"].append(
                        run_worker("ours-private", args.model, path, threads, 1, args.reference, cache)["load_s"]
                    )
                emb = {name: np.load(f"{path}.{name}.npy") for name in times}
                med = {name: statistics.median(ts) for name, ts in times.items()}
                base = paths[0][0]
                for name in times:
                    kernel = last[name]["kernel"] or "numpy/numba"
                    print(
                        f"| {kind} ({len(texts)}) | {threads} | {name if name != 'reference' else 'reference 1.1.2'} | "
                        f"{kernel} | {len(texts) / med[name]:,.0f} | {med['reference'] / med[name]:.2f}x | "
                        f"{med[base] / med[name]:.2f}x | {n_bytes / med[name] / 1e6:.2f} | "
                        f"{last[name]['rss_mb']:.0f} | {huge_mb(last[name])} | "
                        f"{min_cosine(emb[name], emb['reference']):.6f} | "
                        f"{min_cosine(emb[name], emb[base]):.6f} |",
                        flush=True,
                    )
    print("\n| load | median s | runs |\n|---|---|---|")
    for name, xs in loads.items():
        if xs:
            print(f"| {name} | {statistics.median(xs):.2f} | {len(xs)} |")


def huge_mb(worker: dict) -> str:
    """MB the worker had mapped in 2 MiB pages at the end (anonymous + file; Linux)."""
    kb = worker.get("huge_kb")
    return "n/a" if kb is None else f"{kb / 1024:.0f}"


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else the platform's processor string."""
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


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
