"""Property tests (Hypothesis) on the public API."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import unit_or_zero_rows

# Any Unicode text except lone surrogates (which Python str can hold but UTF-8 cannot).
texts_strategy = st.lists(
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=200),
    max_size=30,
)
settings.register_profile("luxical", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile("luxical")


@given(texts=texts_strategy, batch_size=st.integers(1, 40), num_threads=st.integers(1, 3))
def test_rows_are_unit_or_zero_and_batching_never_matters(fixture_embedder, texts, batch_size, num_threads):
    whole = fixture_embedder(texts)
    assert whole.shape == (len(texts), fixture_embedder.dim)
    assert not np.isnan(whole).any()
    assert unit_or_zero_rows(whole)
    split = fixture_embedder(texts, batch_size=batch_size, num_threads=num_threads)
    np.testing.assert_array_equal(split, whole)


@given(texts=texts_strategy)
def test_each_text_embeds_as_if_alone(fixture_embedder, texts):
    whole = fixture_embedder(texts)
    for i, t in enumerate(texts[:5]):
        np.testing.assert_array_equal(fixture_embedder([t])[0], whole[i])


@given(texts=texts_strategy)
def test_tfidf_rows_are_unit_or_empty(fixture_embedder, texts):
    m = fixture_embedder.tfidf(texts)
    assert m.shape == (len(texts), fixture_embedder.vocab_size)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    assert np.all((np.abs(norms - 1) < 1e-5) | (np.diff(m.indptr) == 0))
