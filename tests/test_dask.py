"""luxical.dask on a real distributed.LocalCluster with worker processes."""

from __future__ import annotations

import numpy as np
import pytest

dd = pytest.importorskip("dask.dataframe", reason="the Dask integration needs dask[dataframe] (installed by scripts/test.sh)")
distributed = pytest.importorskip("distributed", reason="needs dask's distributed scheduler (installed by scripts/test.sh)")

import pandas as pd  # noqa: E402

import luxical  # noqa: E402
import luxical.dask  # noqa: E402
from luxical.quantize import INT8_SCALE, quantize  # noqa: E402


@pytest.fixture(scope="module")
def client():
    import dask

    # The test data (12,000 real documents, ~4.6 MiB) travels inside the task graph, which
    # dask warns about above 10 MiB of graph; the warnings are errors in this suite.
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "64MiB"}), distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="3GiB"
    ) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def series(many_real_texts):
    index = pd.Index(np.arange(len(many_real_texts)) * 3 + 1, name="doc_id")
    pdf = pd.DataFrame({"text": many_real_texts}, index=index)
    return dd.from_pandas(pdf, npartitions=12)["text"], pdf["text"]


def _cached_models(client) -> dict[str, list[tuple[str, int]]]:
    # luxical._cache is keyed by (path, precision, mmap); the path is what we check.
    return client.run(lambda: sorted((k[0], id(v)) for k, v in __import__("luxical")._cache.items()))


def test_embed_series_equals_local_and_keeps_the_index(client, series, fixture_embedder, fixture_model_path):
    ds, local = series
    out = luxical.dask.embed_series(ds, fixture_model_path, num_threads=1).compute()
    assert out.index.equals(local.index)
    np.testing.assert_array_equal(np.stack(out.to_numpy()), fixture_embedder(local.tolist()))


def test_model_loaded_once_per_worker(client, series, fixture_model_path):
    ds, _ = series
    luxical.dask.embed_series(ds, fixture_model_path, num_threads=1).compute()
    before = _cached_models(client)
    luxical.dask.embed_series(ds, fixture_model_path, num_threads=1).compute()
    after = _cached_models(client)
    assert len(before) == 2  # two worker processes
    key = str(fixture_model_path.resolve())
    for worker, models in after.items():
        # Every one of the 12 partitions per run used the worker's one cached load: the same
        # object before and after a second run.
        assert [k for k, _ in models].count(key) == 1
        assert models == before[worker]


def test_pickled_embedder_reuses_the_worker_cache(client, series, fixture_embedder):
    ds, local = series
    out = luxical.dask.embed_series(ds.head(500, compute=False), fixture_embedder).compute()
    np.testing.assert_array_equal(np.stack(out.to_numpy()), fixture_embedder(local.head(500).tolist()))


def test_embed_array(client, series, fixture_embedder, fixture_model_path):
    ds, local = series
    arr = luxical.dask.embed_array(ds, fixture_model_path, num_threads=1)
    assert arr.shape[1] == fixture_embedder.dim and arr.dtype == np.float32
    np.testing.assert_array_equal(arr.compute(), fixture_embedder(local.tolist()))


def test_map_partitions_recipe_with_meta(client, series, fixture_embedder, fixture_model_path):
    ds, local = series
    out = ds.map_partitions(luxical.dask.embed_partition, str(fixture_model_path), meta=("text", object))
    np.testing.assert_array_equal(np.stack(out.compute().to_numpy()), fixture_embedder(local.tolist()))


def test_nulls(client, fixture_embedder, fixture_model_path):
    pdf = pd.Series(["one document", None, "another document"], index=[10, 20, 30], name="text")
    ds = dd.from_pandas(pdf, npartitions=1)
    with pytest.raises(ValueError, match="index label 20 is null"):
        luxical.dask.embed_series(ds, fixture_model_path).compute()
    out = luxical.dask.embed_series(ds, fixture_model_path, nulls="null").compute()
    assert out[20] is None
    np.testing.assert_array_equal(np.stack([out[10], out[30]]), fixture_embedder(["one document", "another document"]))
    empty = luxical.dask.embed_array(ds, fixture_model_path, nulls="empty").compute()
    assert not empty[1].any()
    with pytest.raises(ValueError, match="cannot hold nulls"):
        luxical.dask.embed_array(ds, fixture_model_path, nulls="null")


def test_int8_to_parquet_with_the_recorded_scale(client, many_real_texts, fixture_embedder, fixture_model_path, tmp_path):
    """A Dask column has no metadata: parquet_metadata() puts the record in every file
    (custom_metadata), and dequantize(directory) reads the codes at that scale."""
    from test_quantize import assert_int8_file_round_trip

    texts = many_real_texts[:3000]
    emb = fixture_embedder(texts)
    ddf = dd.from_pandas(pd.DataFrame({"id": np.arange(len(texts)), "text": texts}), npartitions=4)
    ddf["embedding"] = luxical.dask.embed_series(ddf["text"], fixture_model_path, quantize="int8", num_threads=1)
    meta = luxical.dask.parquet_metadata(fixture_model_path, quantize="int8")
    ddf[["id", "embedding"]].to_parquet(tmp_path / "int8", schema=None, custom_metadata=meta)
    assert_int8_file_round_trip(tmp_path / "int8", emb, INT8_SCALE)
    # an explicit scale through embed_frame (heads see the float embeddings)
    from test_heads import _random_heads

    heads = _random_heads(fixture_embedder.dim, emb[:300])[:1]
    framed = luxical.dask.embed_frame(ddf["text"], fixture_model_path, heads=heads, quantize="int8", scale=0.4, num_threads=1)
    framed["id"] = ddf["id"]
    framed[["id", "embedding"]].to_parquet(
        tmp_path / "int8-0.4", schema=None,
        custom_metadata=luxical.dask.parquet_metadata(fixture_model_path, quantize="int8", scale=0.4),
    )
    assert_int8_file_round_trip(tmp_path / "int8-0.4", emb, 0.4)
    np.testing.assert_allclose(framed["quality_score"].compute().to_numpy(np.float32), heads[0].apply(emb)["quality_score"], rtol=1e-6)
    # embed_array gives the same codes; binary codes are (n, ceil(dim / 8))
    arr = luxical.dask.embed_array(ddf["text"], fixture_model_path, quantize="int8", num_threads=1)
    assert arr.dtype == np.int8
    np.testing.assert_array_equal(arr.compute(), quantize(emb, "int8", scale=INT8_SCALE))
    bits = luxical.dask.embed_array(ddf["text"], fixture_model_path, quantize="binary", num_threads=1)
    assert bits.shape[1] == (fixture_embedder.dim + 7) // 8
    np.testing.assert_array_equal(bits.compute(), quantize(emb, "binary"))
    with pytest.raises(ValueError, match=r"scale=0\.5 applies to quantize=\"int8\" or \"uint8\" only, not quantize='binary'"):
        luxical.dask.embed_series(ddf["text"], fixture_model_path, quantize="binary", scale=0.5)
    with pytest.raises(ValueError, match="quantize must be"):
        luxical.dask.embed_series(ddf["text"], fixture_model_path, quantize="int4")


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_embed_frame_heads_equal_numpy_on_the_embeddings(client, series, fixture_embedder, tmp_path, precision):
    from test_heads import _close, _ids_match, _random_heads

    ds, local = series
    ds, local = ds.partitions[:3], local.iloc[: 3 * 1000]
    model = fixture_embedder.with_precision(precision)
    heads = _random_heads(64, fixture_embedder(local.tolist()[:300]))
    heads[0].save(tmp_path / "quality.npz")
    given = [tmp_path / "quality.npz", *heads[1:]]
    out = luxical.dask.embed_frame(ds, model, heads=given, num_threads=1).compute()
    pd.testing.assert_index_equal(out.index, local.index)
    emb = np.stack(out["embedding"].to_numpy())
    np.testing.assert_array_equal(emb, model(local.tolist()))
    columns = [c for h in heads for c in h.columns]
    got = {c: out[c].to_numpy(dtype=np.int32 if c.endswith("_id") else np.float32) for c in columns}
    want = {k: v for h in heads for k, v in h.apply(emb).items()}
    _close(got, want, columns, f"dask/{precision}")
    _ids_match(heads[-1], emb, got, f"dask/{precision}")
    lean = luxical.dask.embed_frame(ds, model, heads=given, embedding_column=None, num_threads=1).compute()
    assert list(lean.columns) == columns
    pd.testing.assert_frame_equal(lean, out[columns])
    with_nulls = dd.from_pandas(pd.Series(["a document", None], name="text"), npartitions=1)
    nulled = luxical.dask.embed_frame(with_nulls, model, heads=given, nulls="null", num_threads=1).compute()
    assert nulled["embedding"].iloc[1] is None and nulled[columns].iloc[1].isna().all()
