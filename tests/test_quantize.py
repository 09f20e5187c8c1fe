"""Quantised outputs: error bounds, reference compatibility, retrieval impact."""

from __future__ import annotations

import json

import numpy as np
import pytest

import luxical
from luxical import dequantize, quantize


@pytest.fixture(scope="module")
def emb(real_texts):
    return luxical.embed(real_texts)


@pytest.mark.parametrize("precision,limit", [("uint8", 0.5), ("int8", 0.5), ("uint8", 0.25)])
def test_round_trip_error_is_half_a_bin_inside_the_limit(emb, precision, limit):
    q = quantize(emb, precision, limit=limit)
    assert q.dtype == (np.uint8 if precision == "uint8" else np.int8)
    back = dequantize(q, precision, limit=limit)
    width = 2 * limit / 255 if precision == "uint8" else limit / 127
    inside = np.abs(emb) <= limit
    assert np.abs(back - emb)[inside].max() <= width / 2 + 1e-6
    assert np.all(np.abs(back[~inside]) >= limit - width)  # saturates


def test_binary_packs_sign_bits(emb):
    q = quantize(emb, "binary")
    assert q.dtype == np.uint8 and q.shape == (len(emb), (emb.shape[1] + 7) // 8)
    back = dequantize(q, "binary", dim=emb.shape[1])
    np.testing.assert_array_equal(back > 0, emb > 0)
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), 1.0, rtol=1e-6)


def test_uint8_matches_the_reference(emb, run_reference, tmp_path):
    np.save(tmp_path / "emb.npy", emb)
    run_reference(
        f"""
import numpy as np
from luxical.misc_utils import fast_8bit_uniform_scalar_quantize
np.save({str(tmp_path / 'ref.npy')!r}, fast_8bit_uniform_scalar_quantize(np.load({str(tmp_path / 'emb.npy')!r}), 0.5))
"""
    )
    np.testing.assert_array_equal(quantize(emb, "uint8", limit=0.5), np.load(tmp_path / "ref.npy"))


def test_retrieval_changes_little(real_text_rows):
    # Find each package's long description from its synopsis among 3,000 descriptions.
    described = [r for r in real_text_rows if r.get("title") and r.get("body")][:3000]
    assert len(described) == 3000
    corpus = [{"text": r["body"]} for r in described]
    pairs = [(r["title"], i) for i, r in enumerate(described[:1000])]
    q = luxical.embed([p[0] for p in pairs])
    d = luxical.embed([c["text"] for c in corpus])
    gold = np.array([p[1] for p in pairs])

    def recall_at_10(qm, dm):
        scores = qm @ dm.T
        top = np.argsort(-scores, axis=1)[:, :10]
        return float(np.mean([g in t for g, t in zip(gold, top)]))

    base = recall_at_10(q, d)
    results = {
        "uint8": recall_at_10(dequantize(quantize(q, "uint8"), "uint8"), dequantize(quantize(d, "uint8"), "uint8")),
        "int8": recall_at_10(dequantize(quantize(q, "int8"), "int8"), dequantize(quantize(d, "int8"), "int8")),
        "binary": recall_at_10(dequantize(quantize(q, "binary"), "binary", dim=q.shape[1]), dequantize(quantize(d, "binary"), "binary", dim=d.shape[1])),
    }
    # Measured on these 1,000 queries x 3,000 documents with the default model (recall@10):
    # float 0.875, uint8 0.874, int8 0.875, binary 0.821.
    assert results["uint8"] >= base - 0.02 and results["int8"] >= base - 0.02
    assert results["binary"] >= base - 0.10


# --- the stored scale: what the engines write and dequantize reads -----------------------


def assert_int8_file_round_trip(path, emb_by_id: np.ndarray, scale: float, *, id_column: str = "id") -> None:
    """Checks an engine's int8 output at `path` (a Parquet file or directory) against the
    float embeddings `emb_by_id[id]`: the codes are int8 at `scale`, the recorded scale makes
    ``dequantize(path)`` equal ``dequantize(codes, "int8", scale=scale)``, every row is
    within cosine 0.999 of its float row, and an explicit scale or precision that
    contradicts the record is refused."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)  # pyarrow's own reading, not luxical's
    codes = np.array(table.column("embedding").to_pylist(), dtype=np.int8)
    floats = emb_by_id[table.column(id_column).to_numpy()]
    np.testing.assert_array_equal(codes, quantize(floats, "int8", scale=scale))
    back = dequantize(path)
    assert back.dtype == np.float32 and back.shape == floats.shape
    np.testing.assert_array_equal(back, dequantize(codes, "int8", scale=scale))
    cos = (back * floats).sum(axis=1) / np.linalg.norm(back, axis=1) / np.linalg.norm(floats, axis=1)
    assert cos.min() >= 0.999, cos.min()
    np.testing.assert_array_equal(dequantize(path, "int8", scale=scale), back)  # agreeing arguments are fine
    wrong = 0.5 if scale != 0.5 else 0.6
    with pytest.raises(ValueError, match=rf"quantised with scale {scale}, but scale={wrong} was passed"):
        dequantize(path, scale=wrong)
    with pytest.raises(ValueError, match=r"holds int8 codes, but precision='uint8'"):
        dequantize(path, "uint8")


def test_scale_is_the_new_name_of_limit(emb):
    np.testing.assert_array_equal(quantize(emb, "int8", scale=0.6), quantize(emb, "int8", limit=0.6))
    q = quantize(emb, "uint8", scale=0.3)
    np.testing.assert_array_equal(dequantize(q, "uint8", scale=0.3), dequantize(q, "uint8", limit=0.3))
    with pytest.raises(ValueError, match=r"scale=0\.6 and limit=0\.5 disagree"):
        quantize(emb, "int8", scale=0.6, limit=0.5)
    # Bare codes carry no record: the scale is the caller's (0.5 when not given, as quantize).
    codes = quantize(emb, "int8")
    np.testing.assert_array_equal(dequantize(codes), codes.astype(np.float32) * np.float32(0.5 / 127))


def test_default_scales_and_their_checks():
    from luxical.quantize import INT8_SCALE, default_scale, resolve_scale

    assert INT8_SCALE == 0.6  # bench/int8_scale.py's measurement (bench/README.md)
    assert (default_scale("int8"), default_scale("uint8"), default_scale("binary"), default_scale(None)) == (0.6, 0.5, None, None)
    assert resolve_scale("int8", None) == 0.6 and resolve_scale("int8", 0.4) == 0.4
    with pytest.raises(ValueError, match=r'scale=0\.5 applies to quantize="int8" or "uint8" only, not quantize=\'binary\''):
        resolve_scale("binary", 0.5)
    with pytest.raises(ValueError, match=r"not quantize=None"):
        resolve_scale(None, 0.5)
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale must be a finite number > 0"):
            resolve_scale("int8", bad)


def test_tables_and_files_of_every_layout_carry_their_record(emb, tmp_path):
    """Arrow field metadata, file metadata from parquet_metadata, and Spark's schema JSON,
    in fixed-size lists, lists and binary rows; each read back at its recorded scale."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from luxical.quantize import parquet_metadata

    n, dim = emb.shape
    codes = quantize(emb, "int8", scale=0.6)
    want = dequantize(codes, "int8", scale=0.6)
    record = {b"luxical": json.dumps({"precision": "int8", "dim": dim, "scale": 0.6}).encode()}
    as_list = pa.array(list(codes), pa.list_(pa.int8()))
    field_table = pa.table([as_list], schema=pa.schema([pa.field("embedding", as_list.type, metadata=record)]))
    np.testing.assert_array_equal(dequantize(field_table), want)
    np.testing.assert_array_equal(dequantize(field_table.to_batches()[0]), want)
    # file-level record (Dask's custom_metadata, Polars' metadata=)
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(codes.reshape(-1)), dim)
    file_table = pa.table({"embedding": fixed}).replace_schema_metadata(parquet_metadata(dim, "int8"))
    pq.write_table(file_table, tmp_path / "f.parquet")
    np.testing.assert_array_equal(dequantize(tmp_path / "f.parquet"), want)
    assert json.loads(parquet_metadata(dim, "int8", scale=0.4)["luxical"])["columns"]["embedding"] == {
        "precision": "int8", "dim": dim, "scale": 0.4
    }
    # Spark's layout: uint8 codes as binary rows, the record in the stored Spark schema
    u8 = quantize(emb, "uint8", scale=0.3)
    spark_schema = {"type": "struct", "fields": [{"name": "embedding", "type": "binary", "nullable": True,
                    "metadata": {"luxical": {"precision": "uint8", "dim": dim, "scale": 0.3}}}]}
    binary = pa.table({"embedding": pa.array([r.tobytes() for r in u8], pa.binary())}).replace_schema_metadata(
        {"org.apache.spark.sql.parquet.row.metadata": json.dumps(spark_schema)}
    )
    (tmp_path / "dir").mkdir()
    pq.write_table(binary.slice(0, n // 2), tmp_path / "dir" / "part-0.parquet")
    pq.write_table(binary.slice(n // 2), tmp_path / "dir" / "part-1.parquet")
    (tmp_path / "dir" / "_SUCCESS").write_bytes(b"")
    np.testing.assert_array_equal(dequantize(tmp_path / "dir"), dequantize(u8, "uint8", scale=0.3))
    with pytest.raises(ValueError, match=r"scale 0\.3, but limit=0\.5"):
        dequantize(tmp_path / "dir", limit=0.5)
    # Without a record: int8 values are read as int8 codes, at the scale given.
    bare = pa.table({"embedding": as_list})
    np.testing.assert_array_equal(dequantize(bare, scale=0.6), want)


def test_unreadable_columns_are_named(emb, tmp_path):
    import pyarrow as pa

    codes = quantize(emb[:3], "int8")
    with_null = pa.table({"embedding": pa.array([list(codes[0]), None, list(codes[2])], pa.list_(pa.int8()))})
    with pytest.raises(ValueError, match=r"table: column 'embedding' has 1 null rows"):
        dequantize(with_null)
    ragged = pa.table({"embedding": pa.array([[1, 2, 3], [1, 2]], pa.list_(pa.int8()))})
    with pytest.raises(ValueError, match=r"column 'embedding' row 1 holds 2 values, row 0 holds 3"):
        dequantize(ragged, scale=0.6)
    with pytest.raises(ValueError, match=r"no column 'vec' \(columns: \['embedding'\]\)"):
        dequantize(ragged, column="vec")
    with pytest.raises(ValueError, match=r"column 'embedding' is string"):
        dequantize(pa.table({"embedding": ["a"]}))
    with pytest.raises(FileNotFoundError, match="no-such.parquet"):
        dequantize(tmp_path / "no-such.parquet")
