#!/usr/bin/env python3
"""Trains the default model shipped in the package (python/luxical/models/default.npz).

Recipe (see MODEL.md):
 1. corpus: the output of scripts/data/build_corpus.py (Debian documentation, 92k docs;
    default .data/corpus/shard-*.parquet), shuffled with seed 0
    (luxical.training.data.load_corpus);
 2. vocabulary: every word piece of the teacher's BERT-uncased tokenizer (1-grams), so
    every word has a feature; IDF = ln(N / df) over the whole corpus;
 3. start vectors: the teacher's embedding of each word piece's string (model2vec);
 4. teacher embeddings (cached, resumable) of the first --docs corpus documents (256
    tokens) and of a general English word list (SCOWL's american-english-large from the
    Debian package wamerican-large, fetched with apt-get download unless --words is given);
 5. fit the vectors so the TF-IDF-weighted sums match the teacher on documents and on
    words (luxical.training.static.fit_vectors);
 6. partial whitening fitted on the embeddings of those documents and words
    (whitening_projection), offset trick, export with a float16 first layer (fits the
    32 MB package budget; costs < 0.001 of the dev-suite mean, MODEL.md).

Usage (the corpus needs the dev suite first, for its overlap filter; see MODEL.md):
  python scripts/eval/build_dev_suite.py      # -> .data/eval/dev
  python scripts/data/build_corpus.py         # -> .data/corpus/shard-*.parquet
  python scripts/train_default_model.py [--corpus .data/corpus/shard-*.parquet]
      [--work .data/cache/train] --out OUT.npz
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np

TEACHER = "all-MiniLM-L6-v2"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO / ".data" / "corpus"  # scripts/data/build_corpus.py's default output
DEFAULT_WORK = REPO / ".data" / "cache" / "train"


def fetch_wordlist(work: Path) -> Path:
    """SCOWL's american-english-large, from the Debian package wamerican-large (no root needed)."""
    dest = work / "wamerican-large"
    path = dest / "usr/share/dict/american-english-large"
    if not path.exists():
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "wamerican-large"], cwd=dest, check=True)
        deb = sorted(dest.glob("wamerican-large_*.deb"))[-1]
        subprocess.run(["dpkg", "-x", str(deb), str(dest)], check=True)
    return path


def load_wordlist(path: Path) -> list[str]:
    """Lower-cased alphabetic words (one hyphen allowed), deduplicated, sorted; drops
    possessives and single letters."""
    words = path.read_text(encoding="utf-8", errors="replace").split("\n")
    return sorted({w.lower() for w in words if re.fullmatch(r"[A-Za-z][a-z]+(-[a-z]+)?", w)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", nargs="+", type=Path, help=f"corpus shards (default: {DEFAULT_CORPUS}/shard-*.parquet)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK,
                    help="caches: n-gram vectors, document frequencies, teacher embeddings (default: %(default)s)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--words", type=Path, help="word list, one per line (default: fetch wamerican-large)")
    ap.add_argument("--docs", type=int, default=42_000, help="teacher-embedded corpus documents to fit on")
    ap.add_argument("--holdout", type=int, default=2_000, help="of those, held back to report the fit")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--word-weight", type=float, default=1.0)
    ap.add_argument("--whiten", type=float, default=0.6, help="whitening power (see whitening_projection)")
    ap.add_argument("--first-layer-dtype", default="float16", choices=["float16", "float32"])
    ap.add_argument("--seed", type=int, default=0, help="seeds the fit's batch order and word draws")
    ap.add_argument("--device", default=None, help="teacher device (cpu, cuda, ...)")
    args = ap.parse_args()
    if not args.corpus:
        args.corpus = sorted(DEFAULT_CORPUS.glob("shard-*.parquet"))
        if not args.corpus:
            ap.error(f"no corpus in {DEFAULT_CORPUS}: run scripts/data/build_corpus.py or pass --corpus")

    import scipy.sparse

    from luxical._luxical import Featurizer
    from luxical.training.data import load_corpus
    from luxical.training.init import embed_ngrams, ngram_strings
    from luxical.training.static import fit_vectors, model_from_coords, whitening_projection
    from luxical.training.teacher import embed_with_teacher, load_teacher, teacher_tokenizer_json

    t0 = time.time()
    # Settings only: no paths of this machine in the report (it ships next to the model).
    report: dict = {"settings": {k: v for k, v in vars(args).items() if k not in ("corpus", "work", "out", "words")},
                    "corpus_files": [p.name for p in args.corpus]}
    args.work.mkdir(parents=True, exist_ok=True)
    texts = load_corpus(args.corpus, seed=0)
    tj = teacher_tokenizer_json(TEACHER)
    import tokenizers

    hf = tokenizers.Tokenizer.from_str(tj)
    pieces = [i for i in range(hf.get_vocab_size()) if not ((t := hf.id_to_token(i)).startswith("[") and t.endswith("]"))]
    ngrams = np.array(pieces, dtype=np.uint32).reshape(-1, 1)
    print(f"vocabulary: {len(ngrams)} word pieces; corpus: {len(texts)} documents", flush=True)

    vec_path = args.work / f"ngram_vectors_{len(ngrams)}.npy"
    if vec_path.exists():
        vectors = np.load(vec_path)
    else:
        teacher = load_teacher(TEACHER, device=args.device, max_seq_length=32)
        vectors = embed_ngrams(teacher, ngram_strings(tj, ngrams), progress=True)
        np.save(vec_path, vectors)
    df_path = args.work / f"df_{len(ngrams)}.npy"
    if df_path.exists():
        df = np.load(df_path)
    else:
        counter = Featurizer(tj, ngrams.ravel(), 1, np.ones(len(ngrams), np.float32))
        df = np.zeros(len(ngrams))
        for i in range(0, len(texts), 16384):
            df += counter.document_frequencies(texts[i : i + 16384])
        np.save(df_path, df)
    idf = (np.log(len(texts)) - np.log(np.maximum(df, 1))).astype(np.float32)
    featurizer = Featurizer(tj, ngrams.ravel(), 1, idf)

    def tfidf(batch: list[str], max_tokens: int | None = None) -> scipy.sparse.csr_matrix:
        indptr, indices, data = featurizer.tfidf(batch, None, max_tokens)
        return scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(batch), len(ngrams)))

    report["prepare_s"] = time.time() - t0

    docs = texts[: args.docs]
    doc_targets = np.asarray(
        embed_with_teacher(docs, TEACHER, args.work / "teacher_docs", teacher_id=TEACHER, max_seq_length=256, device=args.device),
        dtype=np.float32,
    )
    words = load_wordlist(args.words or fetch_wordlist(args.work))
    word_targets = np.asarray(
        embed_with_teacher(words, TEACHER, args.work / "teacher_words", teacher_id=TEACHER, max_seq_length=32,
                           batch_size=1024, device=args.device),
        dtype=np.float32,
    )
    report["teacher_s"] = time.time() - t0 - report["prepare_s"]
    print(f"teacher embeddings: {len(docs)} documents, {len(words)} words", flush=True)
    # The teacher saw 256 tokens including [CLS] and [SEP]: fit on the same 254.
    x_docs = tfidf(docs, max_tokens=254)
    x_words = tfidf(words)
    t1 = time.time()
    fitted, fit_report = fit_vectors(
        vectors, x_docs, doc_targets, x_words, word_targets, epochs=args.epochs, lr=args.lr,
        word_weight=args.word_weight, holdout=args.holdout, seed=args.seed,
    )
    report["fit"] = fit_report
    report["fit_s"] = time.time() - t1
    mean, projection = whitening_projection(fitted, [x_docs, x_words], power=args.whiten)
    model = model_from_coords(tj, ngrams, idf, (fitted.astype(np.float64) - mean) @ projection)
    model.save(args.out, first_layer_dtype=args.first_layer_dtype)
    report["total_s"] = time.time() - t0
    args.out.with_suffix(".train.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {args.out}: {model!r}, {args.out.stat().st_size / 1e6:.1f} MB in {report['total_s']:.0f}s "
          f"(holdout cos {fit_report['holdout_cos'][0]:.3f} -> {fit_report['holdout_cos'][-1]:.3f})")


if __name__ == "__main__":
    main()
