"""Shared (memory-mapped) weights and the int8 precision path.

Expectations are independent of the code under test: a private float32 load of the same
file (bit-identical outputs), the kernel's own page accounting in /proc (a shared file
mapping holds no private pages), and cosine to the exact float32 path on real texts.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import luxical
from conftest import read_real_texts


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "weights"
    monkeypatch.setenv("LUXICAL_CACHE_DIR", str(d))
    return d


def _sample_texts(n_short: int = 2000, n_long: int = 400) -> list[str]:
    """Real texts of the repository's sample (tests/data): package descriptions and
    documentation chunks."""
    rows = read_real_texts()
    short = [r["text"] for r in rows if r["kind"] == "short"][:n_short]
    long = [r["text"] for r in rows if r["kind"] == "long"][:n_long]
    return short + long


# ---------------------------------------------------------------------------- weight cache
def test_mapped_weights_embed_bit_identically(fixture_model_path, real_texts, cache_dir):
    private = luxical.Embedder.load(fixture_model_path, mmap=False)
    assert not private.weights_mapped
    first = luxical.Embedder.load(fixture_model_path, mmap=True)  # converts, writes the cache
    files = list(cache_dir.glob("*.lxw"))
    assert len(files) == 1 and first.weights_mapped
    mtime = files[0].stat().st_mtime_ns
    second = luxical.Embedder.load(fixture_model_path, mmap=True)  # maps the existing file
    assert second.weights_mapped and files[0].stat().st_mtime_ns == mtime
    want = private(real_texts)
    np.testing.assert_array_equal(first(real_texts), want)
    np.testing.assert_array_equal(second(real_texts), want)
    # The weights read back from the cache are the file's weights.
    for a, b in zip(second.layers, private.layers):
        np.testing.assert_array_equal(a, b)


def test_a_damaged_cache_file_is_rebuilt_not_trusted(fixture_model_path, real_texts, cache_dir):
    luxical.Embedder.load(fixture_model_path, mmap=True)
    (path,) = cache_dir.glob("*.lxw")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40  # one flipped bit in the weights
    path.unlink()  # cache files are read-only (and mapped): replace, never write in place
    path.write_bytes(bytes(data))
    emb = luxical.Embedder.load(fixture_model_path, mmap=True)
    np.testing.assert_array_equal(emb(real_texts), luxical.Embedder.load(fixture_model_path, mmap=False)(real_texts))
    assert path.read_bytes() != bytes(data)  # replaced by a good copy
    path.unlink()
    path.write_bytes(bytes(data[: len(data) // 3]))  # truncated
    emb = luxical.Embedder.load(fixture_model_path, mmap=True)
    assert emb.weights_mapped and path.stat().st_size == len(data)


def test_another_model_never_meets_this_models_cache(fixture_model_path, tmp_path, cache_dir, real_texts):
    a = luxical.Embedder.load(fixture_model_path)
    layers = a.layers
    layers[-1] = layers[-1] * np.float32(-1.0)  # same shapes, different weights
    other = luxical.Embedder.from_arrays(
        tokenizer_json=a.tokenizer_json, ngrams=a.ngrams, idf=a.idf, layers=layers
    )
    other.save(tmp_path / "other.npz")
    luxical.Embedder.load(fixture_model_path, mmap=True)
    b = luxical.Embedder.load(tmp_path / "other.npz", mmap=True)
    assert len(list(cache_dir.glob("*.lxw"))) == 2
    np.testing.assert_array_equal(b(real_texts), -a(real_texts))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="platform: root ignores directory permissions")
def test_unwritable_cache_dir_falls_back_to_private_memory(fixture_model_path, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("LUXICAL_CACHE_DIR", str(ro / "sub"))
    emb = luxical.Embedder.load(fixture_model_path, mmap=True)
    assert not emb.weights_mapped and emb(["hello"]).shape == (1, emb.dim)


def test_cache_dir_that_is_a_file_falls_back_to_private_memory(fixture_model_path, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LUXICAL_CACHE_DIR", str(blocker))
    emb = luxical.Embedder.load(fixture_model_path, mmap=True)
    assert not emb.weights_mapped
    np.testing.assert_array_equal(emb(["some text"]), luxical.Embedder.load(fixture_model_path)(["some text"]))


_CHILD = r"""
import sys, luxical, numpy as np
emb = luxical.Embedder.load(sys.argv[1], mmap=True)
emb(["warm every page " * 50] * 64)
print("ready", flush=True)
sys.stdin.readline()  # measure only once every process has mapped the weights
private = shared = 0
with open("/proc/self/smaps") as f:
    inside = False
    for line in f:
        if "-" in line.split()[0] and len(line.split()) >= 5:
            inside = line.rstrip().endswith(".lxw")
        elif inside and line.startswith(("Private_Clean", "Private_Dirty")):
            private += int(line.split()[1])
        elif inside and line.startswith(("Shared_Clean", "Shared_Dirty")):
            shared += int(line.split()[1])
print(private, shared, emb.weights_mapped)
sys.stdout.flush()
sys.stdin.read()  # stay alive until the parent has measured every child
"""


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="platform: needs Linux /proc/<pid>/smaps")
def test_worker_processes_share_one_copy_of_the_weights(fixture_model_path, cache_dir):
    luxical.Embedder.load(fixture_model_path, mmap=True)  # create the cache file
    env = {**os.environ, "LUXICAL_CACHE_DIR": str(cache_dir)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(fixture_model_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    try:
        assert all(p.stdout.readline().strip() == "ready" for p in procs)
        for p in procs:
            p.stdin.write("measure\n")
            p.stdin.flush()
        results = [p.stdout.readline().split() for p in procs]
    finally:
        for p in procs:
            p.communicate("", timeout=60)
    (cache_file,) = cache_dir.glob("*.lxw")
    for private_kb, shared_kb, mapped in results:
        assert mapped == "True"
        # While all three map it, every resident page of the weights is shared, none private.
        assert int(private_kb) == 0, results
        assert int(shared_kb) > 0, results
    assert cache_file.stat().st_size > 0


def test_pickled_embedder_keeps_mmap_and_precision(fixture_model_path, cache_dir, real_texts):
    emb = luxical.Embedder.load(fixture_model_path, mmap=True, precision="int8")
    back = pickle.loads(pickle.dumps(emb))
    assert back.weights_mapped and back.precision == "int8"
    np.testing.assert_array_equal(back(real_texts), emb(real_texts))
    mem = luxical.Embedder.from_bytes(emb.to_bytes()).with_precision("int8")
    back = pickle.loads(pickle.dumps(mem))
    assert back.precision == "int8"
    np.testing.assert_array_equal(back(real_texts), emb(real_texts))


# ------------------------------------------------------------------------------- precision
def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    keep = (np.linalg.norm(a, axis=1) > 0) | (np.linalg.norm(b, axis=1) > 0)
    return np.sum(a[keep] * b[keep], axis=1)


def test_int8_stays_close_to_float32_on_real_text(fixture_model_path, real_texts):
    # The fixture is a real trained model (20k -> 32 -> 256 -> 256 -> 64): its hidden
    # 256 -> 256 layer runs in int8, the output layer in float32.
    exact = luxical.Embedder.load(fixture_model_path)
    int8 = exact.with_precision("int8")
    assert exact.precision == "float32" and int8.precision == "int8"
    texts = real_texts + _sample_texts()
    a, b = exact(texts), int8(texts)
    assert not np.array_equal(a, b)  # the int8 path really ran
    cos = _row_cosines(a, b)
    assert cos.min() >= 0.999, f"worst cosine {cos.min():.5f} on {texts[int(np.argmin(cos))][:80]!r}"
    # Zero rows (no known n-gram) stay zero; others stay unit norm.
    np.testing.assert_array_equal(np.linalg.norm(a, axis=1) == 0, np.linalg.norm(b, axis=1) == 0)
    assert not np.isnan(b).any()
    # The exact model is untouched by making an int8 copy.
    np.testing.assert_array_equal(exact(texts[:50]), luxical.Embedder.load(fixture_model_path)(texts[:50]))


def test_bfloat16_stays_closer_to_float32_than_int8(fixture_model_path, real_texts):
    # Same trained fixture: the hidden 256 -> 256 layer in bfloat16 (8-bit significands,
    # float32 sums), the output layer in float32.
    exact = luxical.Embedder.load(fixture_model_path)
    bf16 = luxical.Embedder.load(fixture_model_path, precision="bfloat16")
    assert bf16.precision == "bfloat16" and exact.with_precision("bfloat16").precision == "bfloat16"
    texts = real_texts + _sample_texts()
    a, b, q = exact(texts), bf16(texts), exact.with_precision("int8")(texts)
    assert not np.array_equal(a, b)  # the bfloat16 path really ran
    cos_bf16, cos_int8 = _row_cosines(a, b), _row_cosines(a, q)
    assert cos_bf16.min() >= 0.9995, f"worst cosine {cos_bf16.min():.6f} on {texts[int(np.argmin(cos_bf16))][:80]!r}"
    # Each rounding of bfloat16 is relative (2^-9), int8's is absolute per row (max/254):
    # on real activations bfloat16 loses less.
    assert cos_bf16.mean() > cos_int8.mean()
    np.testing.assert_array_equal(np.linalg.norm(a, axis=1) == 0, np.linalg.norm(b, axis=1) == 0)
    assert not np.isnan(b).any()
    np.testing.assert_array_equal(b[:40], bf16(texts[:40], num_threads=1))


def test_int8_keeps_the_output_layer_in_float32():
    # The default model (29,523 -> 383 -> 383) has no hidden dense layer: its only dense
    # layer is the output (with whitening folded in), which int8 leaves exact.
    exact = luxical.load()
    texts = ["a paraphrase pair", "an unrelated sentence about compilers"]
    np.testing.assert_array_equal(exact.with_precision("int8")(texts), exact(texts))


def test_int8_is_thread_count_and_batch_independent(fixture_embedder, real_texts):
    int8 = fixture_embedder.with_precision("int8")
    a = int8(real_texts, num_threads=1)
    np.testing.assert_array_equal(a, int8(real_texts, num_threads=2))
    np.testing.assert_array_equal(a[3:4], int8(real_texts[3:4]))


def test_unknown_precision_is_refused(fixture_model_path):
    with pytest.raises(ValueError, match="bfloat13"):
        luxical.Embedder.load(fixture_model_path, precision="bfloat13")
    with pytest.raises(ValueError, match="int4"):
        luxical.load(fixture_model_path).with_precision("int4")


def test_load_caches_per_precision(fixture_model_path):
    a = luxical.load(fixture_model_path, precision="int8")
    assert a is luxical.load(fixture_model_path, precision="int8")
    assert luxical.load(fixture_model_path).precision == "float32"
