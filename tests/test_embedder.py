"""The Python API: input containers, edge cases, errors, determinism, pickling, threads, fork."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import luxical
from luxical import Embedder
from conftest import unit_or_zero_rows

TINY_TOKENIZER = r"""{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
 "normalizer":{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":null,"lowercase":true},
 "pre_tokenizer":{"type":"BertPreTokenizer"},"post_processor":null,"decoder":null,
 "model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":100,
  "vocab":{"[UNK]":0,"hello":1,"world":2,"!":3}}}"""
PAD = 2**32 - 1


@pytest.fixture(scope="module")
def tiny() -> Embedder:
    # features: [hello], [world], [hello world], [!]
    ngrams = np.array([[1, PAD], [2, PAD], [1, 2], [3, PAD]], dtype=np.uint32)
    w0 = np.array([[1, 0, 1, 0], [0, 1, 0, 1]], dtype=np.float32)
    w1 = np.eye(2, dtype=np.float32)
    return Embedder.from_arrays(tokenizer_json=TINY_TOKENIZER, ngrams=ngrams, idf=np.array([1, 1, 2, 1], np.float32), layers=[w0, w1])


def test_hand_computed_embedding(tiny):
    out = tiny(["Hello WORLD", "", "!", "hello world hello world"])
    # "hello world": tf-idf (1, 1, 2)/sqrt6 on hello, world, hello-world; layer 0 gives
    # (3, 1)/sqrt6 -> ReLU -> normalise -> (3, 1)/sqrt10; identity output layer.
    np.testing.assert_allclose(out[0], np.array([3, 1]) / np.sqrt(10), rtol=1e-6)
    np.testing.assert_array_equal(out[1], [0, 0])
    np.testing.assert_array_equal(out[2], [0, 1])
    # counts double, TF-IDF is normalised: same as once.
    np.testing.assert_allclose(out[3], out[0], rtol=1e-6)
    np.testing.assert_allclose(tiny.tfidf(["hello world"]).toarray(), [np.array([1, 1, 2, 0]) / np.sqrt(6)], rtol=1e-6)


def test_properties(fixture_embedder):
    e = fixture_embedder
    assert (e.dim, e.vocab_size, e.max_ngram_len) == (64, 20000, 5)
    assert e.ngrams.shape == (20000, 5) and e.ngrams.dtype == np.uint32
    assert e.idf.shape == (20000,) and e.idf.dtype == np.float32
    assert [w.shape for w in e.layers] == [(32, 20000), (256, 32), (256, 256), (64, 256)]
    assert "20000" in repr(e)


def _containers(texts):
    return {
        "list": list(texts),
        "tuple": tuple(texts),
        "numpy_str": np.array(texts),
        "numpy_object": np.array(texts, dtype=object),
        "pandas_object": pd.Series(texts, dtype=object),
        "pandas_arrow": pd.Series(texts, dtype="string[pyarrow]"),
        "arrow_string": pa.array(texts, type=pa.string()),
        "arrow_large_string": pa.array(texts, type=pa.large_string()),
        "arrow_chunked": pa.chunked_array([pa.array(texts[:7]), pa.array(texts[7:], type=pa.string())]),
        "arrow_sliced": pa.array(["x"] * 3 + list(texts) + ["y"])[3:-1],
        "generator": (t for t in texts),
    }


def test_every_container_gives_identical_bits(fixture_embedder, real_texts):
    texts = real_texts[:30] + ["", "  "]
    want = fixture_embedder(texts)
    for name, container in _containers(texts).items():
        got = fixture_embedder(container, batch_size=5)
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_determinism_across_threads_and_batches(fixture_embedder, fixture_texts):
    want = fixture_embedder(fixture_texts, num_threads=1, batch_size=4096)
    for threads in (1, 2, 8):
        for batch in (1, 7, 200):
            got = fixture_embedder(fixture_texts, num_threads=threads, batch_size=batch)
            np.testing.assert_array_equal(got, want, err_msg=f"threads={threads} batch={batch}")
    # order of calls does not matter either
    np.testing.assert_array_equal(fixture_embedder(fixture_texts[::-1])[::-1], want)


def test_edge_cases(fixture_embedder):
    e = fixture_embedder
    empty = e([])
    assert empty.shape == (0, 64) and empty.dtype == np.float32
    out = e(["", " ", "\n\t", "\x00", "!!!", "a" * 100_000, "😀" * 50, "\u200b"])
    assert not np.isnan(out).any()
    assert unit_or_zero_rows(out)
    assert not out[0].any() and not out[1].any() and not out[2].any()
    assert out[5].any()  # a very long repeated word still embeds


def test_bad_items_are_named(fixture_embedder):
    e = fixture_embedder
    with pytest.raises(TypeError, match=r"texts\[2\] is None"):
        e(["a", "b", None])
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        e(["a", 5])
    with pytest.raises(TypeError, match=r"texts\[0\] is bytes"):
        e([b"raw"])
    with pytest.raises(ValueError, match=r"texts\[3\].*surrogate"):
        e(["a", "b", "c", "bad \ud800 text"])
    # the index is the caller's, not the batch's
    with pytest.raises(TypeError, match=r"texts\[12\] is None"):
        e(["ok"] * 12 + [None], batch_size=5)
    with pytest.raises(TypeError, match=r"texts\[4\] is null"):
        e(pa.chunked_array([pa.array(["a", "b"]), pa.array(["c", "d", None])]))
    with pytest.raises(TypeError, match="single str"):
        e("just one string")
    with pytest.raises(TypeError, match="not a string array"):
        e(pa.array([1, 2]))
    with pytest.raises(ValueError, match="batch_size"):
        e(["a"], batch_size=0)
    with pytest.raises(ValueError, match="num_threads"):
        e(["a"], num_threads=0)


def test_out_parameter(fixture_embedder, real_texts):
    out = np.full((5, 64), np.nan, dtype=np.float32)
    res = fixture_embedder(real_texts[:5], out=out)
    assert res is out
    np.testing.assert_array_equal(out, fixture_embedder(real_texts[:5]))
    with pytest.raises(ValueError, match="shape"):
        fixture_embedder(real_texts[:5], out=np.empty((4, 64), np.float32))


def test_encode_accepts_sentence_transformers_keywords(fixture_embedder, real_texts):
    e = fixture_embedder
    got = e.encode(real_texts[:4], batch_size=2, show_progress_bar=False, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_array_equal(got, e(real_texts[:4]))
    single = e.encode(real_texts[0])
    np.testing.assert_array_equal(single, got[0])
    with pytest.raises(ValueError, match="always L2-normalised"):
        e.encode(real_texts[:1], normalize_embeddings=False)


def test_save_load_round_trip_is_bit_identical(fixture_embedder, fixture_texts, tmp_path):
    path = tmp_path / "copy.npz"
    fixture_embedder.save(path)
    again = Embedder.load(path)
    np.testing.assert_array_equal(again(fixture_texts), fixture_embedder(fixture_texts))
    assert Embedder.from_bytes(path.read_bytes()).to_bytes() == path.read_bytes()
    # numpy reads our file with allow_pickle=False and sees the reference's keys and dtypes
    with np.load(path, allow_pickle=False) as z:
        assert int(z["version"]) == 1
        assert z["recognized_ngrams"].dtype == np.uint32 and z["nn_layer_0"].shape == (32, 20000)
        np.testing.assert_array_equal(z["nn_layer_2"], fixture_embedder.layers[2])


def test_pickle_is_small_and_lazy_by_path(fixture_embedder, fixture_texts, tmp_path):
    blob = pickle.dumps(fixture_embedder)
    assert len(blob) < 1000  # by path, not by weights
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again(fixture_texts[:20]), fixture_embedder(fixture_texts[:20]))
    in_memory = Embedder.from_bytes(fixture_embedder.to_bytes())
    again = pickle.loads(pickle.dumps(in_memory))
    np.testing.assert_array_equal(again(fixture_texts[:20]), fixture_embedder(fixture_texts[:20]))


def test_many_python_threads_at_once(fixture_embedder, fixture_texts):
    want = fixture_embedder(fixture_texts)
    n = 16
    barrier = threading.Barrier(n)
    results: list[np.ndarray | None] = [None] * n
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fixture_embedder(fixture_texts, num_threads=1 + i % 2, batch_size=17 + i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_array_equal(r, want)


def _embed_in_child(path: str, texts: list[str], queue) -> None:
    e = Embedder.load(path)
    queue.put(e(texts, num_threads=2))


def test_fork_after_parent_used_thread_pool(fixture_model_path, fixture_embedder, real_texts):
    want = fixture_embedder(real_texts, num_threads=2)  # parent's pool is now running
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_embed_in_child, args=(str(fixture_model_path), real_texts, queue))
    proc.start()
    got = queue.get(timeout=120)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    np.testing.assert_array_equal(got, want)


def test_thread_count_from_environment(monkeypatch):
    from luxical._luxical import resolve_num_threads

    monkeypatch.setenv("LUXICAL_NUM_THREADS", "3")
    assert resolve_num_threads(None) == 3
    assert resolve_num_threads(5) == 5
    # rayon's convention: not a positive integer = not set (tests/test_settings.py)
    monkeypatch.setenv("LUXICAL_NUM_THREADS", "lots")
    assert resolve_num_threads(None) == len(os.sched_getaffinity(0))
    monkeypatch.delenv("LUXICAL_NUM_THREADS")
    monkeypatch.setenv("RAYON_NUM_THREADS", "2")
    assert resolve_num_threads(None) == 2
    monkeypatch.delenv("RAYON_NUM_THREADS")
    assert resolve_num_threads(None) == len(os.sched_getaffinity(0))


def test_hash_ngram_matches_stored_keys(fixture_dir):
    from luxical._luxical import hash_ngram

    with np.load(fixture_dir / "small_model.npz") as z:
        rows, keys, values = z["recognized_ngrams"], z["ngram_hash_to_ngram_idx_keys"], z["ngram_hash_to_ngram_idx_values"]
    for k in range(0, len(keys), 997):
        row = rows[values[k]]
        assert hash_ngram(row[row != PAD].tolist(), 5) == keys[k]
