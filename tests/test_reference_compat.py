"""Two-way compatibility with the real reference luxical 1.1.2 (run in a subprocess from
its own install target, since it shares our import name)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import luxical

pytestmark = pytest.mark.reference


def test_reference_built_model_loads_and_matches(run_reference, tmp_path, fixture_model_path, real_texts):
    """The reference builds a fresh random model (its own space-saving summary over real
    text, its own init), saves it and embeds real text; ours loads the file and must agree."""
    texts_path = tmp_path / "texts.json"
    texts = real_texts + ["", "   ", "Unknown ☃ snowman ⛄ 🤖", "fonts"]
    texts_path.write_text(json.dumps(texts))
    model_path = tmp_path / "ref_model.npz"
    out_path = tmp_path / "ref_out.npy"
    run_reference(
        f"""
import json, numpy as np
from luxical.embedder import Embedder, initialize_embedder_from_ngram_summary
from luxical.ngrams import space_saving_ngram_summary
base = Embedder.load({str(fixture_model_path)!r})
texts = json.load(open({str(texts_path)!r}))
tokens = base.tokenize(texts)
summary = space_saving_ngram_summary(tokens, max_ngram_length=4, num_top_items=50_000)
emb = initialize_embedder_from_ngram_summary(summary, base.tokenizer, [24, 40, 16],
        min_ngram_count_multiple=1.0, max_vocabulary_size=3_000, embedder_init_seed=7)
emb.save({str(model_path)!r})
np.save({str(out_path)!r}, Embedder.load({str(model_path)!r})(texts))
"""
    )
    ours = luxical.Embedder.load(model_path)
    assert ours.max_ngram_len == 4
    assert ours.layer_dims[1:] == [24, 40, 16]
    want = np.load(out_path)
    got = ours(texts)
    assert np.abs(got - want).max() <= 1e-5
    nonzero = np.linalg.norm(want, axis=1) > 0
    assert nonzero.sum() >= len(real_texts)  # real documents all have features
    cos = np.sum(got[nonzero] * want[nonzero], axis=1)
    assert cos.min() >= 0.99999


def test_our_saved_model_loads_in_reference(run_reference, tmp_path, tokenizer_json, real_texts):
    """A model we build and save loads in the reference and embeds identically."""
    rng = np.random.default_rng(3)
    # A vocabulary of real n-grams: unigrams, bigrams and trigrams of real text.
    from luxical import Embedder

    tok = Embedder.from_arrays(
        tokenizer_json=tokenizer_json,
        ngrams=np.array([[1, 2**32 - 1, 2**32 - 1]], dtype=np.uint32),
        idf=np.ones(1, dtype=np.float32),
        layers=[np.ones((2, 1), dtype=np.float32), np.ones((2, 2), dtype=np.float32)],
    )
    seen: dict[tuple[int, ...], int] = {}
    for ids in tok.tokenize(real_texts):
        ids = ids.tolist()
        for n in (1, 2, 3):
            for i in range(len(ids) - n + 1):
                key = tuple(ids[i : i + n])
                seen[key] = seen.get(key, 0) + 1
    top = sorted(seen, key=lambda k: (-seen[k], k))[:4000]
    ngrams = np.full((len(top), 3), 2**32 - 1, dtype=np.uint32)
    for r, key in enumerate(top):
        ngrams[r, : len(key)] = key
    counts = np.array([seen[k] for k in top], dtype=np.float64)
    idf = (np.log(counts.sum()) - np.log(counts)).astype(np.float32)
    dims = [len(top), 20, 48, 12]
    layers = [rng.uniform(-1, 1, size=(dims[i + 1], dims[i])).astype(np.float32) for i in range(3)]
    ours = Embedder.from_arrays(tokenizer_json=tokenizer_json, ngrams=ngrams, idf=idf, layers=layers)
    path = tmp_path / "ours.npz"
    ours.save(path)
    texts_path = tmp_path / "texts.json"
    texts = real_texts + ["", "zzz qqq"]
    texts_path.write_text(json.dumps(texts))
    out_path = tmp_path / "ref_on_ours.npy"
    run_reference(
        f"""
import json, numpy as np
from luxical.embedder import Embedder
e = Embedder.load({str(path)!r})
assert e.max_ngram_length == 3 and e.embedding_dim == 12
np.save({str(out_path)!r}, e(json.load(open({str(texts_path)!r}))))
"""
    )
    want = np.load(out_path)
    got = ours(texts)
    assert np.abs(got - want).max() <= 1e-5
    # Reloading our own file is bit-identical.
    np.testing.assert_array_equal(Embedder.load(path)(texts), got)
