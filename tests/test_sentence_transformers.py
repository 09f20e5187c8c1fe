"""luxical.sentence_transformers.LuxicalModule inside a real SentenceTransformer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="needs sentence-transformers (the train extra)")

from sentence_transformers import SentenceTransformer  # noqa: E402

import luxical  # noqa: E402
from luxical.sentence_transformers import LuxicalModule  # noqa: E402


def test_encode_matches_the_runtime(fixture_embedder, fixture_model_path, real_texts):
    st = SentenceTransformer(modules=[LuxicalModule(fixture_model_path)], device="cpu")
    assert st.get_embedding_dimension() == fixture_embedder.dim
    got = st.encode(real_texts, batch_size=16)
    np.testing.assert_array_equal(got, fixture_embedder(real_texts))
    tensor = st.encode(real_texts[:5], convert_to_tensor=True)
    np.testing.assert_array_equal(tensor.numpy(), fixture_embedder(real_texts[:5]))
    # prompts are prepended to the text, as for any input module
    np.testing.assert_array_equal(st.encode(["world"], prompt="hello "), fixture_embedder(["hello world"]))


def test_save_and_reload_folder(tmp_path, real_texts):
    st = SentenceTransformer(modules=[LuxicalModule()], device="cpu")
    st.save(str(tmp_path / "st"))
    again = SentenceTransformer(str(tmp_path / "st"), device="cpu", trust_remote_code=True)
    np.testing.assert_array_equal(again.encode(real_texts[:20]), luxical.embed(real_texts[:20]))


def test_similarity_api(real_texts):
    st = SentenceTransformer(modules=[LuxicalModule()], device="cpu")
    emb = st.encode(real_texts[:4])
    sim = st.similarity(emb, emb).numpy()
    np.testing.assert_allclose(sim, emb @ emb.T, atol=1e-6)
