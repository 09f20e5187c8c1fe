#!/usr/bin/env python3
"""Trains the default model shipped in the package (python/luxical/models/default.npz).

Recipe (see MODEL.md):
 1. corpus: ../shared/data/build_corpus.py output (Debian documentation, 92k docs),
    shuffled with seed 0 (luxical.training.data.load_corpus);
 2. n-gram counts (Space-Saving, 1..3-grams) over the whole corpus; vocabulary = every
    word piece of the BERT-uncased tokenizer (so every word has a feature) + the most
    frequent 2-3-grams with a guaranteed count >= 5;
 3. IDF = ln(N / df) over the corpus;
 4. first layer initialised from the teacher's embeddings of the n-gram strings
    (luxical.training.init: PCA with partial whitening, offset trick, centring second layer);
    word pieces only by default: adding 2-3-grams lowered the dev-suite score;
 5. optionally (--distill) distillation (Gram-matrix KL) on the first --docs
    teacher-embedded documents: it lowered the dev-suite score, so the shipped model
    skips it (MODEL.md);
 6. export with a float16 first layer (fits the 32 MB package budget).

The shipped model: --multigrams 0 --dim 257 (word pieces only, no distillation).

Usage:
  python scripts/train_default_model.py --corpus DIR/shard-*.parquet --work WORK --out OUT.npz
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", nargs="+", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="caches: counts, n-gram vectors, teacher embeddings")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--docs", type=int, default=42_000, help="teacher-embedded documents to distill on")
    ap.add_argument("--multigrams", type=int, default=0, help="2-3-grams to add (0: word pieces only)")
    ap.add_argument("--dim", type=int, default=257)
    ap.add_argument("--whiten", type=float, default=0.75, help="PCA whitening power (see luxical.training.init)")
    ap.add_argument("--epochs", type=float, default=5.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--temperature", type=float, default=3.0)
    ap.add_argument("--distill", action="store_true", help="fine-tune by distillation (hurt the dev suite, see MODEL.md)")
    args = ap.parse_args()

    from luxical import Embedder
    from luxical._luxical import Featurizer, SpaceSaving, Tokenizer
    from luxical.training.data import load_corpus
    from luxical.training.distill import distill
    from luxical.training.init import embed_ngrams, init_from_vectors, ngram_strings
    from luxical.training.teacher import load_teacher, teacher_tokenizer_json

    t0 = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    texts = load_corpus(args.corpus, seed=0)
    tj = teacher_tokenizer_json("all-MiniLM-L6-v2")
    n = 3
    counts_path = args.work / "summary3.bin"
    if counts_path.exists():
        summary = SpaceSaving.from_bytes(counts_path.read_bytes())
    else:
        tok = Tokenizer(tj)
        summary = SpaceSaving(3_000_000, n)
        for i in range(0, len(texts), 8192):
            summary.update(tok, texts[i : i + 8192])
        counts_path.write_bytes(summary.to_bytes())
    rows, counts, errors = summary.items()
    rows = rows.reshape(-1, n)
    import tokenizers

    hf = tokenizers.Tokenizer.from_str(tj)
    uni = [i for i in range(hf.get_vocab_size()) if not ((t := hf.id_to_token(i)).startswith("[") and t.endswith("]"))]
    pad = 2**32 - 1
    lens = (rows != pad).sum(1)
    multi = rows[(lens > 1) & (counts - errors >= 5)][: args.multigrams]
    ngrams = np.full((len(uni) + len(multi), n), pad, dtype=np.uint32)
    ngrams[: len(uni), 0] = uni
    ngrams[len(uni) :] = multi
    print(f"vocabulary: {len(uni)} word pieces + {len(multi)} multi-grams", flush=True)

    vec_path = args.work / f"ngram_vectors_{len(ngrams)}.npy"
    if vec_path.exists():
        vectors = np.load(vec_path)
    else:
        teacher = load_teacher("all-MiniLM-L6-v2", device=None, max_seq_length=32)
        vectors = embed_ngrams(teacher, ngram_strings(tj, ngrams), progress=True)
        np.save(vec_path, vectors)
    df_path = args.work / f"df_{len(ngrams)}.npy"
    if df_path.exists():
        df = np.load(df_path)
    else:
        feat = Featurizer(tj, ngrams.ravel(), n, np.ones(len(ngrams), np.float32))
        df = np.zeros(len(ngrams))
        for i in range(0, len(texts), 16384):
            df += feat.document_frequencies(texts[i : i + 16384])
        np.save(df_path, df)
    idf = (np.log(len(texts)) - np.log(np.maximum(df, 1))).astype(np.float32)
    if len(multi) == 0:
        ngrams = np.ascontiguousarray(ngrams[:, :1])  # word pieces only: 1-grams suffice
    init = init_from_vectors(tj, ngrams, idf, vectors, dim=args.dim, whiten=args.whiten)
    print(f"initialised {init!r} in {time.time() - t0:.0f}s", flush=True)
    report: dict = {"init_s": time.time() - t0}
    model = init
    if args.distill:
        # Files (not the text list) so distill takes the same seeded prefix, and the
        # teacher cache of a run over the whole corpus is reused.
        model, rep = distill(
            list(args.corpus), "all-MiniLM-L6-v2", None, init=init, limit=args.docs - 500, epochs=args.epochs, lr=args.lr,
            batch_size=args.batch_size, temperature=args.temperature, holdout=500, work_dir=args.work / "distill",
        )
        report.update(rep)
    model.save(args.out, first_layer_dtype="float16")
    report["total_s"] = time.time() - t0
    args.out.with_suffix(".train.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) in {report['total_s']:.0f}s")


if __name__ == "__main__":
    main()
