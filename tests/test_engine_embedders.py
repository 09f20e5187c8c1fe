"""Every data engine embeds with the embedder it was given, not a float32 reload of its
file: precision (int8), in-memory models (bytes) and `max_tokens` all reach the workers
of a real Dask LocalCluster (worker processes), a real local Spark session and a real
local Ray cluster. Expected values are the same embedder called locally; int8 output
differs from float32 for the random model used (checked), so a float32 reload fails."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pyarrow as pa
import pytest

import luxical
from made_models import WORDS, make_embedder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _texts(n: int = 60) -> list[str]:
    rng = np.random.default_rng(3)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 40)))) for _ in range(n)]


TEXTS = _texts()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = tmp_path_factory.mktemp("engine-models") / "made.npz"
    make_embedder(seed=5).save(path)
    file_f32 = luxical.Embedder.load(path)
    file_int8 = luxical.Embedder.load(path, precision="int8")
    bytes_int8 = luxical.Embedder.from_bytes(file_f32.to_bytes()).with_precision("int8")
    assert bytes_int8._source is None
    # The check below is only meaningful when int8 and float32 differ on these texts.
    assert not np.array_equal(file_int8(TEXTS), file_f32(TEXTS))
    assert not np.array_equal(file_f32(TEXTS, max_tokens=3), file_f32(TEXTS))
    return {"path": path, "file_f32": file_f32, "file_int8": file_int8, "bytes_int8": bytes_int8}


CASES = [
    # (model, max_tokens)
    ("file_int8", luxical._luxical.DEFAULT_MAX_TOKENS),
    ("bytes_int8", luxical._luxical.DEFAULT_MAX_TOKENS),
    ("file_f32", 3),
    ("file_int8", 5),
]


def _expected(models, name, max_tokens) -> np.ndarray:
    return models[name](TEXTS, max_tokens=max_tokens)


def _mt(max_tokens) -> dict:
    """`max_tokens=` only when it is not the default (the default cases then also run
    against an engine API without the argument)."""
    return {} if max_tokens == luxical._luxical.DEFAULT_MAX_TOKENS else {"max_tokens": max_tokens}


# ------------------------------------------------------------------------------- Dask
@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed", reason="needs dask's distributed scheduler (scripts/test.sh installs it)")
    pytest.importorskip("dask.dataframe", reason="needs dask[dataframe] (scripts/test.sh installs it)")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="2GiB"
    ) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.mark.parametrize("name,max_tokens", CASES)
def test_dask_workers_embed_with_the_given_embedder(dask_client, models, name, max_tokens):
    import dask.dataframe as dd
    import pandas as pd

    import luxical.dask

    ds = dd.from_pandas(pd.Series(TEXTS, name="text"), npartitions=3)
    want = _expected(models, name, max_tokens)
    series = luxical.dask.embed_series(ds, models[name], num_threads=1, **_mt(max_tokens)).compute()
    np.testing.assert_array_equal(np.stack(series.to_numpy()), want)
    array = luxical.dask.embed_array(ds, models[name], num_threads=1, **_mt(max_tokens)).compute()
    np.testing.assert_array_equal(array, want)


def test_dask_map_partitions_recipe_keeps_max_tokens(dask_client, models):
    import dask.dataframe as dd
    import pandas as pd

    import luxical.dask

    ds = dd.from_pandas(pd.Series(TEXTS, name="text"), npartitions=2)
    out = ds.map_partitions(luxical.dask.embed_partition, models["file_int8"], max_tokens=4, meta=("text", object))
    np.testing.assert_array_equal(np.stack(out.compute().to_numpy()), models["file_int8"](TEXTS, max_tokens=4))


def test_dask_path_whose_file_changes_after_the_driver_loaded_it(dask_client, tmp_path):
    """Given a path, the driver loads it and ships the model with its identity: when the file
    at that path is replaced before the job runs, the workers still embed with the model the
    driver loaded (shipped by bytes), never with the new file."""
    import dask.dataframe as dd
    import pandas as pd

    import luxical.dask

    path = tmp_path / "m.npz"
    first, second = make_embedder(seed=11), make_embedder(seed=12)
    first.save(path)
    ds = dd.from_pandas(pd.Series(TEXTS, name="text"), npartitions=2)
    series = luxical.dask.embed_series(ds, path, num_threads=1)  # the driver loads the file now
    second.save(path)  # replaced before any worker reads it
    out = np.stack(series.compute().to_numpy())
    np.testing.assert_array_equal(out, first(TEXTS))
    assert not np.array_equal(out, second(TEXTS))


# ------------------------------------------------------------------------------ Spark
@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark", reason="the Spark integration needs pyspark (scripts/test.sh installs it)")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.fail("PySpark needs a Java runtime (scripts/test.sh installs one from apt)")
    from pyspark.sql import SparkSession

    # workers must import this luxical, whatever `python3` is first on PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("luxical-engine-embedders")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def spark_frame(spark):
    table = pa.table({"id": pa.array(np.arange(len(TEXTS)), pa.int64()), "text": TEXTS})
    return spark.createDataFrame(table.to_pandas()).repartition(3)


def _by_id(rows, column="embedding") -> np.ndarray:
    rows = sorted(rows, key=lambda r: r["id"])
    return np.array([r[column] for r in rows], dtype=np.float32)


@pytest.mark.parametrize("name,max_tokens", CASES)
def test_spark_executors_embed_with_the_given_embedder(spark_frame, models, name, max_tokens):
    import luxical.spark

    want = _expected(models, name, max_tokens)
    out = luxical.spark.embed_dataframe(spark_frame, "text", model=models[name], **_mt(max_tokens))
    np.testing.assert_array_equal(_by_id(out.collect()), want)
    udf = luxical.spark.embed_udf(model=models[name], **_mt(max_tokens))
    out = spark_frame.withColumn("embedding", udf("text"))
    np.testing.assert_array_equal(_by_id(out.collect()), want)


# -------------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="the Ray integration needs ray[data] (scripts/test.sh installs it)")
    pytest.importorskip("ray.data", reason="needs ray[data]")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.parametrize("name,max_tokens", CASES)
def test_ray_actors_embed_with_the_given_embedder(ray_session, models, name, max_tokens):
    import luxical.ray

    ray = ray_session
    table = pa.table({"id": np.arange(len(TEXTS)), "text": TEXTS})
    ds = ray.data.from_arrow([table.slice(0, 30), table.slice(30)])
    kwargs = {"model": models[name], **_mt(max_tokens)}
    out = ds.map_batches(
        luxical.ray.LuxicalEmbed, fn_constructor_kwargs=kwargs, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1,
    )
    result = pa.concat_tables(ray.get(out.to_arrow_refs()))
    order = np.argsort(result.column("id").to_numpy())
    got = np.stack(result.column("embedding").to_numpy(zero_copy_only=False))[order]
    np.testing.assert_array_equal(got, _expected(models, name, max_tokens))


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10"])
def test_bad_max_tokens_is_refused_on_the_driver(bad):
    from luxical._columns import check_options

    with pytest.raises(ValueError, match="max_tokens"):
        check_options("error", None, bad)
