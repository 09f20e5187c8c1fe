"""A probe head on a real labelled task vs a fastText supervised classifier.

Task: Debian package description → the package's Section (from apt's package lists), on
the benchmark corpus's short documents (`bench/data/short.parquet`, built by
scripts/data/build_bench_corpus.py from Debian `main`), shuffled with seed 0, the first
`--test` documents held out. Sections with fewer than `--min-count` packages are kept
(every label counts).

- fastText (PyPI `fasttext-wheel`): supervised, dim 50, word 1-2-grams, 5 epochs (the
  settings of the issue), one thread for repeatability.
- luxical: the default model's embeddings; heads fitted with `luxical.heads.fit_probe`
  (scikit-learn) and then applied by the runtime in the embedding pass
  (`Embedder.with_heads`): accuracy of the runtime's argmax, and embed-only vs
  embed+head docs/s on the test documents.

Run: .venv/bin/python bench/heads_probe.py [--test 5000] [--kinds logistic mlp]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def sections() -> dict[str, str]:
    """Package → Section from apt's lists (`apt-cache dumpavail`); component prefixes
    (`contrib/`, `non-free/`) dropped."""
    out = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
    result: dict[str, str] = {}
    package = None
    for line in out.splitlines():
        if line.startswith("Package: "):
            package = line[9:].strip()
        elif line.startswith("Section: ") and package is not None:
            result.setdefault(package, line[9:].strip().split("/")[-1])
    return result


def load_task(n_test: int, seed: int) -> tuple[list[str], list[str], list[str], list[str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(REPO / "bench" / "data" / "short.parquet")
    section_of = sections()
    texts, labels = [], []
    for pid, text in zip(table.column("id").to_pylist(), table.column("text").to_pylist()):
        section = section_of.get(pid.removeprefix("debian-description:"))
        if section is not None:
            texts.append(text)
            labels.append(section)
    order = np.random.default_rng(seed).permutation(len(texts))
    texts = [texts[i] for i in order]
    labels = [labels[i] for i in order]
    return texts[n_test:], labels[n_test:], texts[:n_test], labels[:n_test]


def fasttext_accuracy(train_x, train_y, test_x, test_y, epoch: int = 5, lr: float = 0.1) -> tuple[float, float, float]:
    import fasttext

    clean = lambda t: " ".join(t.split())  # noqa: E731  one document per line
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        path.write_text("".join(f"__label__{y} {clean(x)}\n" for x, y in zip(train_x, train_y)), encoding="utf-8")
        t0 = time.perf_counter()
        model = fasttext.train_supervised(str(path), dim=50, wordNgrams=2, epoch=epoch, lr=lr, thread=1, verbose=0)
        fit_s = time.perf_counter() - t0
    docs = [clean(x) for x in test_x]
    t0 = time.perf_counter()
    # (model.predict breaks on numpy 2; the binding's own batch call does not)
    predicted, _ = model.f.multilinePredict(docs, 1, 0.0, "strict")
    pred_s = time.perf_counter() - t0
    labels = [p[0].removeprefix("__label__") if p else "" for p in predicted]
    return float(np.mean([a == b for a, b in zip(labels, test_y)])), fit_s, len(docs) / pred_s


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--test", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kinds", nargs="+", default=["logistic", "mlp"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fasttext-epochs", type=int, nargs="*", default=[], help="also fastText with these epochs at lr 0.5")
    p.add_argument("--fasttext-only", action="store_true")
    args = p.parse_args()

    import luxical
    from luxical import heads as H

    train_x, train_y, test_x, test_y = load_task(args.test, args.seed)
    print(f"train {len(train_x)}, test {len(test_x)}, {len(set(train_y) | set(test_y))} sections; "
          f"majority-class test accuracy {Counter(test_y).most_common(1)[0][1] / len(test_y):.3f}", flush=True)
    for epoch, lr in [(5, 0.1)] + [(e, 0.5) for e in args.fasttext_epochs]:
        acc, fit_s, docs_s = fasttext_accuracy(train_x, train_y, test_x, test_y, epoch, lr)
        print(f"| fastText supervised (dim 50, word 1-2-grams, {epoch} epochs, lr {lr}) | {acc:.3f} | fit {fit_s:.0f} s | "
              f"{docs_s:,.0f} docs/s predict (1 thread) |", flush=True)
    if args.fasttext_only:
        return

    emb = luxical.load()
    t0 = time.perf_counter()
    x_train = emb(train_x, num_threads=args.threads)
    embed_s = time.perf_counter() - t0
    print(f"embedded {len(train_x)} training docs in {embed_s:.1f} s", flush=True)
    for kind in args.kinds:
        t0 = time.perf_counter()
        head = H.fit_probe(x_train, train_y, kind=kind, name="section", C=10.0, hidden=256)
        fit_s = time.perf_counter() - t0
        scored = emb.with_heads(head)
        out = scored(test_x, num_threads=args.threads, embeddings=False)  # warm-up and the answer
        probs = np.stack([out[c] for c in head.columns], axis=1)
        pred = np.array(head.labels)[probs.argmax(axis=1)]
        acc = float(np.mean(pred == np.array(test_y)))
        times_on, times_off = [], []
        for _ in range(5):  # alternating, median
            t0 = time.perf_counter(); emb(test_x, num_threads=args.threads); times_off.append(time.perf_counter() - t0)  # noqa: E702
            t0 = time.perf_counter(); scored(test_x, num_threads=args.threads); times_on.append(time.perf_counter() - t0)  # noqa: E702
        off, on = len(test_x) / np.median(times_off), len(test_x) / np.median(times_on)
        print(f"| luxical default model + {head.info['model']} head | {acc:.3f} | fit {fit_s:.0f} s | "
              f"{on:,.0f} docs/s embed+head vs {off:,.0f} embed only ({on / off:.1%}; {args.threads} thread) |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
