"""The first layer's table held in float16 (``Embedder.load(first_layer_dtype=...)``).

Independent expectations: widening float16 to float32 is exact, so a model whose file
stores the first layer in float16 must embed bit for bit as with a float32 table; for a
float32 file, numpy applied to the TF-IDF features and the float16-rounded weights (a
second implementation of the network); the weight-cache file's size from the table's
shape; and the scalar (portable) gather against the F16C one in a fresh process.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import luxical
from conftest import read_real_texts


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rows = read_real_texts()
    short = [r["text"] for r in rows if r["kind"] == "short"][:1500]
    long = [r["text"] for r in rows if r["kind"] == "long"][:300]
    return short + long + ["", "a", "the the the"]


def _row_cosines(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x, y = x.astype(np.float64), y.astype(np.float64)
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    both_zero = (nx == 0) & (ny == 0)
    return np.where(both_zero, 1.0, (x * y).sum(axis=1) / np.where(both_zero, 1.0, nx * ny))


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_a_float16_file_embeds_bit_for_bit_with_a_float16_table(texts, tmp_path, monkeypatch, mmap, precision):
    monkeypatch.setenv("LUXICAL_CACHE_DIR", str(tmp_path / "cache"))
    path = luxical.default_model_path()  # the shipped model stores its first layer in float16
    with np.load(path) as z:
        assert z["nn_layer_0"].dtype == np.float16
    auto = luxical.Embedder.load(path, precision=precision, mmap=mmap)
    wide = luxical.Embedder.load(path, precision=precision, mmap=mmap, first_layer_dtype="float32")
    assert auto.first_layer_dtype == "float16" and wide.first_layer_dtype == "float32"
    assert auto.weights_mapped == mmap
    got, want = auto(texts), wide(texts)
    assert got.tobytes() == want.tobytes(), f"{(got != want).any(axis=1).sum()} rows differ"


def test_a_float32_file_keeps_float32_unless_asked(fixture_model_path):
    assert luxical.Embedder.load(fixture_model_path).first_layer_dtype == "float32"
    assert luxical.Embedder.load(fixture_model_path, first_layer_dtype="float16").first_layer_dtype == "float16"


def _numpy_embed(model_path: Path, emb: luxical.Embedder, texts: list[str], table_dtype: type) -> np.ndarray:
    """The network in numpy float64 over the runtime's TF-IDF features, with the first
    layer's weights rounded to `table_dtype`."""
    with np.load(model_path) as z:
        n = int(np.asarray(z["num_nn_layers"]).ravel()[0])
        layers = [z[f"nn_layer_{i}"].astype(np.float64) for i in range(n)]
    layers[0] = layers[0].astype(table_dtype).astype(np.float64)
    x = emb.tfidf(texts).astype(np.float64) @ layers[0].T
    for w in layers[1:]:
        x = np.maximum(x, 0.0)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
        x = x @ w.T
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def test_a_float32_file_with_a_float16_table_equals_numpy_on_rounded_weights(fixture_model_path, texts):
    exact = luxical.Embedder.load(fixture_model_path)
    half = luxical.Embedder.load(fixture_model_path, first_layer_dtype="float16")
    got = half(texts)
    want_half = _numpy_embed(fixture_model_path, exact, texts, np.float16)
    assert np.abs(got - want_half).max() < 1e-5
    # The rounding's cost against the float32 table, on real text.
    cos = _row_cosines(got, exact(texts))
    assert cos.min() >= 0.9999, f"lowest row cosine {cos.min()} (row {cos.argmin()})"
    assert not np.array_equal(got, exact(texts))  # the table really was rounded


def test_the_cache_holds_a_half_sized_table(fixture_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("LUXICAL_CACHE_DIR", str(tmp_path / "cache"))
    sizes = {}
    for dtype in ("float32", "float16"):
        before = set((tmp_path / "cache").glob("*.lxw")) if (tmp_path / "cache").exists() else set()
        emb = luxical.Embedder.load(fixture_model_path, mmap=True, first_layer_dtype=dtype)
        assert emb.weights_mapped
        (new,) = set((tmp_path / "cache").glob("*.lxw")) - before  # its own cache entry
        sizes[dtype] = new.stat().st_size
    vocab, d0 = luxical.Embedder.load(fixture_model_path).layer_dims[:2]
    # The float16 entry is smaller by the table's float32 size minus its float16 size
    # (each section padded to 64 bytes).
    saved = sizes["float32"] - sizes["float16"]
    assert abs(saved - vocab * d0 * 2) <= 128, (sizes, vocab, d0)


_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import luxical
    spec = json.loads(sys.argv[1])
    texts = json.load(open(spec["texts"], encoding="utf-8"))
    emb = luxical.Embedder.load(spec["model"], first_layer_dtype="float16")
    np.save(spec["out"], emb(texts, num_threads=2))
    """
)


def test_first_layer_alone_scalar_and_simd_are_bit_identical(fixture_model_path, texts, tmp_path):
    """LUXICAL_KERNEL=portable turns the F16C gather off: the scalar loop widens, multiplies
    and adds in the same order, so the bits are the same (a one-layer model: the gather and
    the normalisation only, no dense kernels whose rounding differs between families)."""
    with np.load(fixture_model_path) as z:
        arrays = {k: z[k] for k in z.files}
    one = luxical.Embedder.from_arrays(
        tokenizer_json=bytes(arrays["tokenizer"]).decode(),
        ngrams=arrays["recognized_ngrams"],
        idf=arrays["idf_values"],
        layers=[arrays["nn_layer_0"]],
    )
    path = tmp_path / "one_layer.npz"
    one.save(path, first_layer_dtype="float16")
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    outs = {}
    for kernel in ("portable", None):
        env = {k: v for k, v in os.environ.items() if k not in ("LUXICAL_KERNEL", "LUXICAL_NO_SIMD")}
        if kernel:
            env["LUXICAL_KERNEL"] = kernel
        out = tmp_path / f"{kernel or 'best'}.npy"
        spec = {"texts": str(texts_file), "model": str(path), "out": str(out)}
        proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[kernel] = np.load(out)
    assert outs["portable"].tobytes() == outs[None].tobytes()


def test_bad_first_layer_dtype_is_refused(fixture_model_path):
    with pytest.raises(ValueError, match="first_layer_dtype.*bfloat16"):
        luxical.Embedder.load(fixture_model_path, first_layer_dtype="bfloat16")


def test_from_bytes_of_a_float16_file_keeps_the_float16_table(texts):
    path = luxical.default_model_path()
    emb = luxical.Embedder.from_bytes(path.read_bytes())
    assert emb.first_layer_dtype == "float16"
    want = luxical.Embedder.load(path, first_layer_dtype="float32")(texts)
    assert emb(texts).tobytes() == want.tobytes()


def test_pickle_keeps_the_first_layer_dtype(fixture_model_path, texts):
    emb = luxical.Embedder.load(fixture_model_path, first_layer_dtype="float16")
    back = pickle.loads(pickle.dumps(emb))
    assert back.first_layer_dtype == "float16"
    assert back(texts).tobytes() == emb(texts).tobytes()
