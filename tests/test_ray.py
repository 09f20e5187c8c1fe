"""luxical.ray.LuxicalEmbed in a real local Ray Data pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray integration needs ray[data] (installed by scripts/test.sh)")
pytest.importorskip("ray.data", reason="needs ray[data]")

import pyarrow as pa  # noqa: E402

import luxical.ray  # noqa: E402
import luxical  # noqa: E402
from luxical.quantize import INT8_SCALE, quantize  # noqa: E402

# Ray Data sets its own deprecated options internally (e.g. use_push_based_shuffle).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _run(ds, actors: int = 2, **kwargs) -> pa.Table:
    out = ds.map_batches(
        luxical.ray.LuxicalEmbed,
        fn_constructor_kwargs=kwargs,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
    )
    return pa.concat_tables(ray.get(out.to_arrow_refs()))


def test_map_batches_equals_local_and_keeps_ids(ray_session, many_real_texts, fixture_embedder, fixture_model_path):
    ids = np.arange(len(many_real_texts)) * 5 + 2
    table = pa.table({"id": ids, "text": many_real_texts})
    step = -(-table.num_rows // 8)
    ds = ray.data.from_arrow([table.slice(i, step) for i in range(0, table.num_rows, step)])  # 8 blocks
    out = _run(ds, model=str(fixture_model_path))
    assert out.column_names == ["id", "text", "embedding"]
    got_ids = out.column("id").to_numpy()
    assert sorted(got_ids) == sorted(ids)
    order = (got_ids - 2) // 5
    emb = np.stack(out.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(emb, fixture_embedder(many_real_texts)[order])


def test_quantized_and_nulls(ray_session, fixture_embedder, fixture_model_path):
    texts = ["first document", None, "a third one"]
    ds = ray.data.from_arrow(pa.table({"text": pa.array(texts, pa.string())}))
    out = _run(ds, actors=1, model=str(fixture_model_path), nulls="null", quantize="uint8")
    col = out.column("embedding")
    assert col.null_count == 1 and col[1].as_py() is None
    want = quantize(fixture_embedder(["first document", "a third one"]), "uint8")
    np.testing.assert_array_equal(np.frombuffer(col[0].as_py(), np.uint8), want[0])
    np.testing.assert_array_equal(np.frombuffer(col[2].as_py(), np.uint8), want[1])


def test_int8_scale_rides_in_the_arrow_field_and_the_parquet_files(ray_session, many_real_texts, fixture_embedder, fixture_model_path, tmp_path):
    from test_quantize import assert_int8_file_round_trip

    texts = many_real_texts[:2000]
    emb = fixture_embedder(texts)
    table = pa.table({"id": np.arange(len(texts)), "text": texts})
    ds = ray.data.from_arrow([table.slice(i, 500) for i in range(0, len(texts), 500)])  # 4 blocks
    out = ds.map_batches(
        luxical.ray.LuxicalEmbed, fn_constructor_kwargs={"model": str(fixture_model_path), "quantize": "int8"},
        batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1,
    )
    # select_columns drops the field's metadata; the schema's record (kept) still says the scale
    out.select_columns(["id", "embedding"]).write_parquet(str(tmp_path / "int8"))
    assert_int8_file_round_trip(tmp_path / "int8", emb, INT8_SCALE)
    # the blocks themselves (Arrow tables) carry the record on the field and in the schema
    blocks = pa.concat_tables(ray.get(out.to_arrow_refs()))
    record = {"precision": "int8", "dim": fixture_embedder.dim, "scale": INT8_SCALE}
    assert json.loads(blocks.schema.field("embedding").metadata[b"luxical"]) == record
    assert json.loads(blocks.schema.metadata[b"luxical"])["columns"] == {"embedding": record}
    ids = blocks.column("id").to_numpy()
    np.testing.assert_array_equal(luxical.dequantize(blocks), luxical.dequantize(quantize(emb[ids], "int8", scale=INT8_SCALE), "int8", scale=INT8_SCALE))
    given = _run(ds, model=str(fixture_model_path), quantize="int8", scale=0.4)
    np.testing.assert_array_equal(
        luxical.dequantize(given), luxical.dequantize(quantize(emb[given.column("id").to_numpy()], "int8", scale=0.4), "int8", scale=0.4)
    )
    with pytest.raises(ValueError, match=r"quantised with scale 0\.4, but scale=0\.6 was passed"):
        luxical.dequantize(given, scale=INT8_SCALE)
    # uint8 (binary rows) at its recorded 0.5
    u8 = _run(ds, actors=1, model=str(fixture_model_path), quantize="uint8")
    codes = np.array([np.frombuffer(b, np.uint8) for b in u8.column("embedding").to_pylist()])
    np.testing.assert_array_equal(codes, quantize(emb[u8.column("id").to_numpy()], "uint8", scale=0.5))
    np.testing.assert_array_equal(luxical.dequantize(u8), luxical.dequantize(codes, "uint8", scale=0.5))
    with pytest.raises(ValueError, match=r"scale=0\.5 applies to quantize=\"int8\" or \"uint8\" only, not quantize=None"):
        luxical.ray.LuxicalEmbed(str(fixture_model_path), scale=0.5)


def test_numpy_and_pandas_batches(fixture_embedder, fixture_model_path):
    import pandas as pd

    embed = luxical.ray.LuxicalEmbed(str(fixture_model_path), num_threads=1)
    texts = np.array(["some text", "other text"], dtype=object)
    np.testing.assert_array_equal(embed({"text": texts})["embedding"], fixture_embedder(list(texts)))
    frame = embed(pd.DataFrame({"text": texts}))
    np.testing.assert_array_equal(np.stack(frame["embedding"].to_numpy()), fixture_embedder(list(texts)))
    with pytest.raises(KeyError, match="no column 'body'"):
        luxical.ray.LuxicalEmbed(str(fixture_model_path), text_column="body")({"text": texts})


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_heads_columns_equal_numpy_on_the_embeddings(ray_session, many_real_texts, fixture_embedder, fixture_model_path, tmp_path, precision):
    from test_heads import _close, _ids_match, _random_heads

    texts = many_real_texts[:1500]
    model = fixture_embedder.with_precision(precision)
    heads = _random_heads(64, fixture_embedder(texts[:300]))
    heads[0].save(tmp_path / "quality.npz")
    given = [str(tmp_path / "quality.npz"), *heads[1:]]
    table = pa.table({"id": np.arange(len(texts)), "text": texts})
    ds = ray.data.from_arrow([table.slice(i, 375) for i in range(0, len(texts), 375)])  # 4 blocks
    out = _run(ds, model=model, heads=given)
    order = np.argsort(out.column("id").to_numpy())
    emb = np.stack(out.column("embedding").to_numpy(zero_copy_only=False))[order]
    np.testing.assert_array_equal(emb, model(texts))
    columns = [c for h in heads for c in h.columns]
    got = {c: out.column(c).to_numpy()[order] for c in columns}
    assert out.schema.field("domain_id").type == pa.int32()
    want = {k: v for h in heads for k, v in h.apply(emb).items()}
    _close(got, want, columns, f"ray/{precision}")
    _ids_match(heads[-1], emb, got, f"ray/{precision}")
    lean = _run(ds, actors=1, model=model, heads=given, output_column=None)
    assert "embedding" not in lean.column_names
    lean_order = np.argsort(lean.column("id").to_numpy())
    for c in columns:
        np.testing.assert_array_equal(lean.column(c).to_numpy()[lean_order], got[c], err_msg=c)
    # numpy and pandas batches, with a null under nulls="null"
    embed = luxical.ray.LuxicalEmbed(model, heads=given, nulls="null", num_threads=1)
    batch = embed({"text": np.array(["first document", None], dtype=object)})
    assert batch["embedding"][1] is None and batch["quality_score"][1] is None
    assert batch["domain_id"][0] == model.with_heads(*heads)(["first document"])["domain_id"][0]
