#!/usr/bin/env python3
"""Scores a text-embedding function on a quality suite built by build_dev_suite.py.

Python (scripts/eval on sys.path, or load this file by path):

    from evaluate import evaluate
    results = evaluate(embed_fn, suite_dir)   # embed_fn(list[str]) -> (n, d) array

CLI:

    python scripts/eval/evaluate.py --model pkg.mod:embed [--factory] [--suite DIR]
                                    [--tasks a,b] [--json OUT.json]

``--model`` names an importable callable (``list[str] -> (n, d)``), or with
``--factory`` a zero-argument callable that returns one. ``embed_fn`` gets at most
BATCH texts per call; every row is L2-normalised again here, so cosine = dot product.

Metrics per task type (``main`` is the one MODEL.md's table shows):

* retrieval: exact cosine ranking of the whole corpus for each query (top 100 kept);
  nDCG@10 (main), MRR@10, recall@10, recall@100 averaged over queries with a relevant
  document;
* classification: ``LogisticRegression(C=10, max_iter=2000, random_state=0)`` fitted on
  the frozen, L2-normalised train embeddings; test accuracy (main) and macro-F1;
* pairs: Spearman (main) and Pearson between cosine and the human score;
* teacher_agreement: Spearman (main) between the model's and the stored teacher's
  cosines on the stored pairs, and knn@10_overlap, the mean share of each text's 10
  nearest neighbours (cosine, itself excluded) that model and teacher agree on.

The result maps each task to its metrics plus ``main``, ``seconds`` and ``type``, and
``_summary`` to the unweighted mean of the main metrics (``mean_main``) and the wall time.
Needs numpy, scipy and scikit-learn.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SUITE = REPO / ".data" / "eval" / "dev"
BATCH = 4096
TOP_K = 100  # documents ranked per query (recall@100 needs them all)
SEED = 0

EmbedFn = Callable[[list[str]], np.ndarray]
# rank_fn(query_texts, corpus_texts, k) -> (n_queries, k) corpus indices, best first
RankFn = Callable[[list[str], list[str], int], np.ndarray]


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def embed_texts(embed_fn: EmbedFn, texts: Sequence[str]) -> np.ndarray:
    """float32 (n, d) rows, L2-normalised (all-zero rows stay zero)."""
    parts = [np.asarray(embed_fn(list(texts[i : i + BATCH])), dtype=np.float32) for i in range(0, len(texts), BATCH)]
    emb = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def load_suite(suite_dir: str | os.PathLike[str]) -> dict:
    path = Path(suite_dir) / "suite.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no suite at {suite_dir} ({path.name} missing): build it with python scripts/eval/build_dev_suite.py"
        )
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- retrieval
def load_retrieval(task_dir: Path) -> tuple[list[dict], list[dict], dict[str, dict[str, float]]]:
    queries = read_jsonl(task_dir / "queries.jsonl")
    corpus = read_jsonl(task_dir / "corpus.jsonl")
    qrels: dict[str, dict[str, float]] = {}
    for row in read_jsonl(task_dir / "qrels.jsonl"):
        qrels.setdefault(row["qid"], {})[row["did"]] = row.get("rel", 1)
    return queries, corpus, qrels


def top_k_by_cosine(query_emb: np.ndarray, corpus_emb: np.ndarray, k: int, block: int = 512) -> np.ndarray:
    """(n_queries, k) corpus indices by decreasing dot product (exact, blockwise)."""
    k = min(k, len(corpus_emb))
    out = np.empty((len(query_emb), k), dtype=np.int64)
    for start in range(0, len(query_emb), block):
        scores = query_emb[start : start + block] @ corpus_emb.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[start : start + block] = np.take_along_axis(top, order, axis=1)
    return out


def retrieval_metrics(ranked: Sequence[Sequence[str]], query_ids: Sequence[str], qrels: dict[str, dict[str, float]]) -> dict:
    """nDCG@10 (graded gains, log2 discount), MRR@10, recall@10 and recall@100 of ranked
    document ids, averaged over the queries that have a relevant document."""
    ndcg, mrr, r10, r100 = [], [], [], []
    discounts = 1.0 / np.log2(np.arange(2, 12))
    for qid, docs in zip(query_ids, ranked):
        rel = qrels.get(qid)
        if not rel:
            continue
        gains = np.array([rel.get(d, 0) for d in docs[:10]], dtype=np.float64)
        ideal = np.sort(np.array(list(rel.values()), dtype=np.float64))[::-1][:10]
        idcg = float(ideal @ discounts[: len(ideal)])
        ndcg.append(float(gains @ discounts[: len(gains)]) / idcg if idcg > 0 else 0.0)
        hits = [i for i, d in enumerate(docs[:10]) if rel.get(d, 0) > 0]
        mrr.append(1.0 / (hits[0] + 1) if hits else 0.0)
        n_relevant = len(rel)
        r10.append(sum(rel.get(d, 0) > 0 for d in docs[:10]) / n_relevant)
        r100.append(sum(rel.get(d, 0) > 0 for d in docs[:100]) / n_relevant)
    return {"ndcg@10": float(np.mean(ndcg)), "mrr@10": float(np.mean(mrr)),
            "recall@10": float(np.mean(r10)), "recall@100": float(np.mean(r100))}


def run_retrieval_ranker(rank_fn: RankFn, task_dir: Path) -> dict:
    """Retrieval metrics for any ranker (BM25 uses this directly)."""
    queries, corpus, qrels = load_retrieval(task_dir)
    top = rank_fn([q["text"] for q in queries], [d["text"] for d in corpus], TOP_K)
    doc_ids = [d["id"] for d in corpus]
    ranked = [[doc_ids[j] for j in row] for row in top]
    metrics = retrieval_metrics(ranked, [q["id"] for q in queries], qrels)
    metrics["main"] = metrics["ndcg@10"]
    return metrics


def run_retrieval(embed_fn: EmbedFn, task_dir: Path) -> dict:
    def rank(query_texts: list[str], corpus_texts: list[str], k: int) -> np.ndarray:
        return top_k_by_cosine(embed_texts(embed_fn, query_texts), embed_texts(embed_fn, corpus_texts), k)

    return run_retrieval_ranker(rank, task_dir)


# --------------------------------------------------------------------------- classification
def run_classification(embed_fn: EmbedFn, task_dir: Path) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    rows = read_jsonl(task_dir / "data.jsonl")
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    classifier = LogisticRegression(C=10.0, max_iter=2000, random_state=SEED)
    classifier.fit(embed_texts(embed_fn, [r["text"] for r in train]), [r["label"] for r in train])
    predicted = classifier.predict(embed_texts(embed_fn, [r["text"] for r in test]))
    gold = [r["label"] for r in test]
    accuracy = float(accuracy_score(gold, predicted))
    return {"accuracy": accuracy, "macro_f1": float(f1_score(gold, predicted, average="macro")), "main": accuracy}


# --------------------------------------------------------------------------- pairs
def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho; 0 when either side is constant (a model that cannot tell pairs apart)."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def run_pairs(embed_fn: EmbedFn, task_dir: Path) -> dict:
    from scipy.stats import pearsonr

    rows = read_jsonl(task_dir / "pairs.jsonl")
    left = embed_texts(embed_fn, [r["text1"] for r in rows])
    right = embed_texts(embed_fn, [r["text2"] for r in rows])
    cosine = (left * right).sum(1)
    human = np.array([r["score"] for r in rows], dtype=np.float64)
    if np.ptp(cosine) == 0:
        return {"spearman": 0.0, "pearson": 0.0, "main": 0.0}
    rho = _spearman(cosine, human)
    return {"spearman": rho, "pearson": float(pearsonr(cosine, human).statistic), "main": rho}


# --------------------------------------------------------------------------- teacher agreement
def nearest_neighbours(emb: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indices of each row's k most similar other rows (unordered)."""
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    return np.argpartition(-sim, k - 1, axis=1)[:, :k]


def run_teacher_agreement(embed_fn: EmbedFn, task_dir: Path, k: int = 10) -> dict:
    texts = [r["text"] for r in read_jsonl(task_dir / "texts.jsonl")]
    pairs = np.load(task_dir / "pairs.npy")
    teacher = np.load(task_dir / "teacher_emb.npy").astype(np.float32)
    teacher /= np.maximum(np.linalg.norm(teacher, axis=1, keepdims=True), 1e-12)
    student = embed_texts(embed_fn, texts)
    cos_student = (student[pairs[:, 0]] * student[pairs[:, 1]]).sum(1)
    cos_teacher = (teacher[pairs[:, 0]] * teacher[pairs[:, 1]]).sum(1)
    rho = _spearman(cos_student, cos_teacher)
    ours, theirs = nearest_neighbours(student, k), nearest_neighbours(teacher, k)
    overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ours.tolist(), theirs.tolist())]))
    return {"spearman": rho, f"knn@{k}_overlap": overlap, "main": rho}


RUNNERS: dict[str, Callable[..., dict]] = {
    "retrieval": run_retrieval,
    "classification": run_classification,
    "pairs": run_pairs,
    "teacher_agreement": run_teacher_agreement,
}
MAIN_METRIC = {"retrieval": "nDCG@10", "classification": "accuracy", "pairs": "Spearman", "teacher_agreement": "Spearman"}


def summarize(results: dict, suite: str | None, seconds: float) -> dict:
    mains = [r["main"] for name, r in results.items() if not name.startswith("_")]
    results["_summary"] = {"suite": suite, "mean_main": float(np.mean(mains)) if mains else 0.0, "seconds": round(seconds, 2)}
    return results


def evaluate(embed_fn: EmbedFn, suite_dir: str | os.PathLike[str] = DEFAULT_SUITE, tasks: Sequence[str] | None = None,
             verbose: bool = True) -> dict:
    """Runs every task of the suite (or those named in `tasks`) on `embed_fn`.

    Returns {task: {metric: value, "main": ..., "seconds": ..., "type": ...},
    "_summary": {"suite", "mean_main", "seconds"}}.
    """
    suite = load_suite(suite_dir)
    unknown = set(tasks or ()) - {t["name"] for t in suite["tasks"]}
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}; the suite has {[t['name'] for t in suite['tasks']]}")
    results: dict = {}
    t_start = time.time()
    for task in suite["tasks"]:
        if tasks and task["name"] not in tasks:
            continue
        t0 = time.time()
        kwargs = {"k": task["k"]} if task["type"] == "teacher_agreement" and "k" in task else {}
        result = RUNNERS[task["type"]](embed_fn, Path(suite_dir) / task["name"], **kwargs)
        result.update(seconds=round(time.time() - t0, 2), type=task["type"])
        results[task["name"]] = result
        if verbose:
            print(f"  {task['name']}: main={result['main']:.4f} ({result['seconds']}s)", file=sys.stderr, flush=True)
    return summarize(results, suite.get("suite"), time.time() - t_start)


def markdown_table(results: dict, name: str = "model") -> str:
    lines = ["| task | type | main metric | value | other |", "|---|---|---|---|---|"]
    for task, r in results.items():
        if task.startswith("_"):
            continue
        other = ", ".join(f"{k}={v:.4f}" for k, v in r.items() if k not in ("main", "seconds", "type") and isinstance(v, float))
        lines.append(f"| {task} | {r['type']} | {MAIN_METRIC[r['type']]} | {r['main']:.4f} | {other} |")
    s = results.get("_summary", {})
    lines.append(f"| **mean** | | | **{s.get('mean_main', 0.0):.4f}** | wall {s.get('seconds', 0)}s ({name}) |")
    return "\n".join(lines)


def import_callable(spec: str, factory: bool = False) -> EmbedFn:
    module, _, attr = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    obj = getattr(importlib.import_module(module), attr or "embed")
    return obj() if factory else obj


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="pkg.mod:function, list[str] -> (n, d) array")
    ap.add_argument("--factory", action="store_true", help="call the imported object once to obtain the embed function")
    ap.add_argument("--suite", type=Path, default=DEFAULT_SUITE, help="suite folder (default: %(default)s)")
    ap.add_argument("--tasks", help="comma-separated task names (default: all)")
    ap.add_argument("--json", type=Path, help="write every metric here")
    args = ap.parse_args()
    results = evaluate(import_callable(args.model, args.factory), args.suite, tasks=args.tasks.split(",") if args.tasks else None)
    print(markdown_table(results, args.model))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
