"""Bad model files give a clear luxical exception, never a crash or an unpickle."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from luxical import Embedder, LuxicalError, ModelFormatError, UnsupportedFormatVersionError


@pytest.fixture(scope="module")
def arrays(fixture_model_path) -> dict[str, np.ndarray]:
    with np.load(fixture_model_path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _npz(arrays: dict[str, np.ndarray], **kwargs) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays, **kwargs)
    return buf.getvalue()


def _load_bytes(data: bytes) -> Embedder:
    return Embedder.from_bytes(data)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no_such_model.npz"):
        Embedder.load("no_such_model.npz")


def test_not_a_zip():
    with pytest.raises(ModelFormatError, match="not a valid .npz"):
        _load_bytes(b"hello, I am not a model")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file(fixture_model_path, fraction):
    data = fixture_model_path.read_bytes()
    with pytest.raises(ModelFormatError):
        _load_bytes(data[: int(len(data) * fraction)])


def test_corrupted_bytes_never_crash(fixture_model_path):
    data = bytearray(fixture_model_path.read_bytes())
    rng = np.random.default_rng(0)
    for trial in range(30):
        bad = bytearray(data)
        for pos in rng.integers(0, len(bad), size=8):
            bad[pos] ^= 0xFF
        try:
            _load_bytes(bytes(bad))
        except LuxicalError:
            pass  # a clear error is fine; loading may also succeed if only weights changed


def test_missing_key(arrays):
    broken = {k: v for k, v in arrays.items() if k != "idf_values"}
    with pytest.raises(ModelFormatError, match="idf_values"):
        _load_bytes(_npz(broken))


def test_future_version(arrays):
    with pytest.raises(UnsupportedFormatVersionError, match="version 2 .*upgrade luxical"):
        _load_bytes(_npz({**arrays, "version": np.int64(2)}))


def test_wrong_dtype(arrays):
    with pytest.raises(ModelFormatError, match="idf_values.*dtype"):
        _load_bytes(_npz({**arrays, "idf_values": arrays["idf_values"].astype(np.int32)}))


def test_object_array_is_never_unpickled(arrays, tmp_path):
    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    obj = np.empty(1, dtype=object)
    obj[0] = Boom()
    buf = io.BytesIO()
    np.savez(buf, **{**arrays, "idf_values": obj}, allow_pickle=True)
    with pytest.raises(ModelFormatError, match="never"):
        _load_bytes(buf.getvalue())
    assert not (tmp_path / "pwned").exists()


def test_layers_that_do_not_chain(arrays):
    with pytest.raises(ModelFormatError, match="do not chain"):
        _load_bytes(_npz({**arrays, "nn_layer_2": np.zeros((256, 100), np.float32)}))


def test_idf_length_differs_from_vocabulary(arrays):
    with pytest.raises(ModelFormatError, match="idf_values has 19999"):
        _load_bytes(_npz({**arrays, "idf_values": arrays["idf_values"][:-1]}))


def test_hash_keys_not_matching_rows(arrays):
    keys = arrays["ngram_hash_to_ngram_idx_keys"].copy()
    keys[5] += 1
    with pytest.raises(ModelFormatError, match=r"keys\[5\] is not the FNV-1a hash"):
        _load_bytes(_npz({**arrays, "ngram_hash_to_ngram_idx_keys": keys}))


def test_hash_keys_count_differs(arrays):
    with pytest.raises(ModelFormatError, match="19999 keys"):
        _load_bytes(_npz({**arrays, "ngram_hash_to_ngram_idx_keys": arrays["ngram_hash_to_ngram_idx_keys"][:-1]}))


def test_nan_weights_are_refused(arrays):
    w = arrays["nn_layer_1"].copy()
    w[3, 4] = np.nan
    with pytest.raises(ModelFormatError, match="nn_layer_1 has a non-finite weight"):
        _load_bytes(_npz({**arrays, "nn_layer_1": w}))


def test_declared_size_larger_than_file(arrays):
    """An .npy header claiming a huge shape over a tiny payload must not allocate it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in arrays.items():
            if k == "idf_values":
                header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (4000000000000,), }"
                header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
                zf.writestr("idf_values.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 16)
            else:
                member = io.BytesIO()
                np.save(member, v)
                zf.writestr(f"{k}.npy", member.getvalue())
    with pytest.raises(ModelFormatError, match="truncated"):
        _load_bytes(buf.getvalue())


def test_compressed_npz_loads(arrays, fixture_embedder, real_texts):
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    e = _load_bytes(buf.getvalue())
    np.testing.assert_array_equal(e(real_texts[:10]), fixture_embedder(real_texts[:10]))
