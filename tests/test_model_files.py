"""Bad model files give a clear luxical exception, never a crash or an unpickle."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

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


def _load_each_way(data: bytes) -> list:
    """Loads `data` from memory, and as a file through the path loader with private and
    with memory-mapped weights (streaming transposition, CRC check, weight cache).
    Returns the three Embedders or exceptions."""
    outcomes: list = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.npz"
        path.write_bytes(data)
        old = os.environ.get("LUXICAL_CACHE_DIR")
        os.environ["LUXICAL_CACHE_DIR"] = str(Path(tmp) / "cache")
        try:
            for load in (
                lambda: Embedder.from_bytes(data),
                lambda: Embedder.load(path, mmap=False),
                lambda: Embedder.load(path, mmap=True),
            ):
                try:
                    outcomes.append(load())
                except Exception as exc:  # noqa: BLE001 - compared below
                    outcomes.append(exc)
        finally:
            if old is None:
                os.environ.pop("LUXICAL_CACHE_DIR")
            else:
                os.environ["LUXICAL_CACHE_DIR"] = old
    return outcomes


_PROBE = ["the data text", "", "embedding of a document 1 2"]


def _load_bytes(data: bytes) -> Embedder:
    """Loads `data` every way (see `_load_each_way`): all must agree, on the error (class
    and message) or on the model (same embeddings). Returns the model or raises the error."""
    first, *others = _load_each_way(data)
    for other in others:
        if isinstance(first, Exception):
            assert type(other) is type(first) and str(other) == str(first), (first, other)
        else:
            assert not isinstance(other, Exception), other
            np.testing.assert_array_equal(other(_PROBE), first(_PROBE))
    if isinstance(first, Exception):
        raise first
    return first


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
        # A clear error is fine; loading may also succeed if only weights changed (the
        # path loader checks the first layer's CRC-32, so it may refuse what the in-memory
        # loader accepted, never the reverse).
        from_bytes, *from_file = _load_each_way(bytes(bad))
        for o in (from_bytes, *from_file):
            assert isinstance(o, (Embedder, LuxicalError)), repr(o)
        if isinstance(from_bytes, LuxicalError):
            assert all(isinstance(o, LuxicalError) for o in from_file), (trial, from_bytes, from_file)


def test_damaged_first_layer_fails_its_crc_check(fixture_model_path, tmp_path):
    data = bytearray(fixture_model_path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("nn_layer_0.npy")
    # Local file header: 30 bytes + name + extra, then the stored .npy bytes.
    name_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0x01  # one bit of one weight: still a finite float
    path = tmp_path / "damaged.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="nn_layer_0.npy fails its CRC-32 check"):
        Embedder.load(path, mmap=False)
    # numpy (what the reference loads with) refuses the same file.
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        with np.load(path, allow_pickle=False) as z:
            z["nn_layer_0"]


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
