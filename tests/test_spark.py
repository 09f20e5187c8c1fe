"""luxical.spark against a real local PySpark session (Java from the machine or apt)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

pyspark = pytest.importorskip("pyspark", reason="the Spark integration needs pyspark (installed by scripts/test.sh)")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("PySpark needs a Java runtime (scripts/test.sh installs one from apt)", allow_module_level=True)

import pyarrow as pa  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402

import luxical  # noqa: E402
import luxical.spark  # noqa: E402
from luxical._luxical import Tokenizer, exact_ngram_counts  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from luxical.quantize import INT8_SCALE, quantize  # noqa: E402

PAD = 2**32 - 1
TASK_CPUS = 2


@pytest.fixture(scope="module")
def spark():
    session = (
        SparkSession.builder.master("local[4]")
        .appName("luxical-tests")
        .config("spark.task.cpus", str(TASK_CPUS))  # local[4] / 2 cpus per task: two tasks at a time
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def frame(spark, many_real_texts):
    texts = list(many_real_texts)
    table = pa.table({"id": pa.array(np.arange(len(texts)) * 7 + 3, pa.int64()), "text": texts})
    return spark.createDataFrame(table.to_pandas()).repartition(6).cache(), table


def _embeddings(rows, column="embedding") -> np.ndarray:
    return np.array([r[column] for r in rows], dtype=np.float32)


def test_embed_dataframe_equals_local_embedding_with_ids(frame, fixture_embedder, fixture_model_path):
    df, table = frame
    assert df.rdd.getNumPartitions() == 6
    out = luxical.spark.embed_dataframe(df, "text", model=fixture_model_path)
    assert out.columns == ["id", "text", "embedding"]
    rows = out.collect()
    assert len(rows) == table.num_rows >= 10_000
    expected = fixture_embedder(table.column("text"))
    by_id = {int(i): k for k, i in enumerate(table.column("id").to_numpy())}
    got = _embeddings(rows)
    order = np.array([by_id[r["id"]] for r in rows])
    assert sorted(order) == list(range(table.num_rows))  # every row exactly once
    assert all(r["text"] == table.column("text")[k].as_py() for r, k in zip(rows, order))
    np.testing.assert_array_equal(got, expected[order])


def test_row_order_is_kept_without_a_shuffle(spark, fixture_embedder, fixture_model_path, many_real_texts):
    texts = many_real_texts[:3000]
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "id long, text string")
    rows = luxical.spark.embed_dataframe(df, "text", model=fixture_model_path).collect()
    assert [r["id"] for r in rows] == list(range(len(texts)))
    np.testing.assert_array_equal(_embeddings(rows), fixture_embedder(texts))


def test_embedder_objects_and_in_memory_models_are_shipped(spark, fixture_embedder, fixture_model_path):
    texts = ["a short document", "another document about debian packages"]
    df = spark.createDataFrame([(t,) for t in texts], "text string")
    in_memory = luxical.Embedder.from_bytes(fixture_model_path.read_bytes())
    for model in (fixture_embedder, in_memory):
        rows = luxical.spark.embed_dataframe(df, "text", model=model).collect()
        np.testing.assert_array_equal(_embeddings(rows), fixture_embedder(texts))


def test_default_model_and_udf(spark):
    texts = ["hello world", "the cat sat on the mat", "a library for parsing json"]
    df = spark.createDataFrame([(t,) for t in texts], "text string")
    embed = luxical.spark.embed_udf()
    rows = df.withColumn("emb", embed("text")).collect()
    np.testing.assert_array_equal(_embeddings(rows, "emb"), luxical.embed(texts))


def test_null_policies(spark, fixture_embedder, fixture_model_path):
    texts = ["first document", None, "third document", None]
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "id long, text string").coalesce(1)
    with pytest.raises(Exception, match=r"is null \(2 nulls"):
        luxical.spark.embed_dataframe(df, "text", model=fixture_model_path).collect()
    rows = luxical.spark.embed_dataframe(df, "text", model=fixture_model_path, nulls="null").collect()
    assert [r["embedding"] is None for r in rows] == [False, True, False, True]
    np.testing.assert_array_equal(_embeddings([rows[0], rows[2]]), fixture_embedder(["first document", "third document"]))
    rows = luxical.spark.embed_dataframe(df, "text", model=fixture_model_path, nulls="empty").collect()
    emb = _embeddings(rows)
    assert not emb[[1, 3]].any() and np.allclose(np.linalg.norm(emb[[0, 2]], axis=1), 1, atol=1e-5)


def test_quantized_outputs(spark, fixture_embedder, fixture_model_path, many_real_texts):
    texts = many_real_texts[:500]
    df = spark.createDataFrame([(t,) for t in texts], "text string").coalesce(1)
    exact = fixture_embedder(texts)
    rows = luxical.spark.embed_dataframe(df, "text", model=fixture_model_path, quantize="uint8").collect()
    got = np.array([np.frombuffer(r["embedding"], dtype=np.uint8) for r in rows])
    np.testing.assert_array_equal(got, quantize(exact, "uint8"))
    rows = luxical.spark.embed_dataframe(df, "text", model=fixture_model_path, quantize="int8").collect()
    # int8 at the measured default scale (0.6, no longer 0.5)
    np.testing.assert_array_equal(np.array([r["embedding"] for r in rows], dtype=np.int8), quantize(exact, "int8", scale=INT8_SCALE))


def test_int8_scale_is_recorded_and_survives_write_parquet(spark, fixture_embedder, fixture_model_path, many_real_texts, tmp_path):
    """The scale rides in the StructField metadata, which df.write.parquet stores in the
    files' Spark schema: luxical.dequantize(directory) needs no arguments."""
    from test_quantize import assert_int8_file_round_trip

    texts = many_real_texts[:2000]
    emb = fixture_embedder(texts)
    dim = fixture_embedder.dim
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "id long, text string").repartition(3)
    out = luxical.spark.embed_dataframe(df, "text", model=fixture_model_path, quantize="int8")
    assert out.schema["embedding"].metadata == {"luxical": {"precision": "int8", "dim": dim, "scale": INT8_SCALE}}
    out.select("id", "embedding").write.parquet(str(tmp_path / "int8"))
    assert_int8_file_round_trip(tmp_path / "int8", emb, INT8_SCALE)
    assert spark.read.parquet(str(tmp_path / "int8")).schema["embedding"].metadata["luxical"]["scale"] == INT8_SCALE
    # an explicit scale
    given = luxical.spark.embed_dataframe(df, "text", model=fixture_model_path, quantize="int8", scale=0.4)
    given.select("id", "embedding").write.parquet(str(tmp_path / "int8-0.4"))
    assert_int8_file_round_trip(tmp_path / "int8-0.4", emb, 0.4)
    # uint8 codes are binary rows; float output records float32
    u8 = luxical.spark.embed_dataframe(df, "text", model=fixture_model_path, quantize="uint8")
    u8.select("id", "embedding").write.parquet(str(tmp_path / "uint8"))
    table = pq.read_table(tmp_path / "uint8")
    codes = np.array([np.frombuffer(b, np.uint8) for b in table.column("embedding").to_pylist()])
    ids = table.column("id").to_numpy()
    np.testing.assert_array_equal(codes, quantize(emb[ids], "uint8", scale=0.5))
    np.testing.assert_array_equal(luxical.dequantize(tmp_path / "uint8"), luxical.dequantize(codes, "uint8", scale=0.5))
    floats = luxical.spark.embed_dataframe(df, "text", model=fixture_model_path)
    assert floats.schema["embedding"].metadata == {"luxical": {"precision": "float32", "dim": dim}}
    floats.select("id", "embedding").write.parquet(str(tmp_path / "float"))
    ids = pq.read_table(tmp_path / "float").column("id").to_numpy()
    np.testing.assert_array_equal(luxical.dequantize(tmp_path / "float"), emb[ids])
    with pytest.raises(ValueError, match=r"scale=0\.5 applies to quantize=\"int8\" or \"uint8\" only, not quantize='binary'"):
        luxical.spark.embed_dataframe(df, "text", model=fixture_model_path, quantize="binary", scale=0.5)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        luxical.spark.embed_dataframe(df, "text", model=fixture_model_path, quantize="int8", scale=0)


def test_bad_arguments_fail_on_the_driver(spark, fixture_model_path):
    df = spark.createDataFrame([(1, "x")], "id long, text string")
    with pytest.raises(ValueError, match="no column 'body'"):
        luxical.spark.embed_dataframe(df, "body", model=fixture_model_path)
    with pytest.raises(TypeError, match="column 'id' is bigint, expected string"):
        luxical.spark.embed_dataframe(df, "id", model=fixture_model_path)
    with pytest.raises(ValueError, match="already has a column 'text'"):
        luxical.spark.embed_dataframe(df, "text", output_col="text", model=fixture_model_path)
    with pytest.raises(ValueError, match="nulls must be"):
        luxical.spark.embed_dataframe(df, "text", nulls="skip", model=fixture_model_path)
    with pytest.raises(FileNotFoundError):
        luxical.spark.embed_dataframe(df, "text", model=fixture_model_path.with_name("missing.npz"))


def test_model_loaded_once_per_worker_and_threads_from_task_cpus(spark, fixture_model_path, many_real_texts):
    df = spark.createDataFrame([(t,) for t in many_real_texts[:4000]], "text string").repartition(8)
    def probe(batches):  # nested: pickled by value, the workers cannot import this module
        """Reports, from inside a Python worker, its pid, the task's thread count and the
        models that worker process has cached."""
        import os

        import pyarrow as pa

        import luxical
        import luxical.spark

        for _ in batches:
            pass
        yield pa.RecordBatch.from_arrays(
            [pa.array([os.getpid()]), pa.array([luxical.spark._task_threads(None)]), pa.array([sorted(k[0] for k in luxical._cache)])],
            names=["pid", "threads", "cached"],
        )

    luxical.spark.embed_dataframe(df, "text", model=fixture_model_path).count()
    probes = df.mapInArrow(probe, "pid long, threads long, cached array<string>").collect()
    assert {p["threads"] for p in probes} == {TASK_CPUS}
    # Worker processes are reused across tasks; each holds the shipped model once, loaded
    # through the per-process cache rather than per batch or per task.
    # (Other tests of this module put other models in the same workers' caches.)
    copies = [[c for c in p["cached"] if f"/{fixture_model_path.stem}-" in c] for p in probes]
    assert all(len(c) <= 1 for c in copies)
    assert any(copies)


def test_vocabulary_built_per_partition_matches_exact_counts(spark, tokenizer_json, many_real_texts):
    texts = many_real_texts[:3000]
    df = spark.createDataFrame([(t,) for t in texts] + [(None,)], "text string").repartition(5)
    vocab = luxical.spark.build_vocabulary(
        df, "text", tokenizer_json, vocab_size=5000, max_ngram_len=3, capacity=2_000_000, min_count=2, idf="df"
    )
    tok = Tokenizer(tokenizer_json)
    ids, offsets = tok.tokenize(texts)
    rows, counts = exact_ngram_counts(ids, offsets, 3)
    truth = {tuple(r[r != PAD]): int(c) for r, c in zip(rows.reshape(-1, 3), counts)}
    got = {tuple(r[r != PAD]): int(c) for r, c in zip(vocab.ngrams, vocab.counts)}
    assert len(got) == 5000
    assert all(truth[k] == c for k, c in got.items())  # merged summaries are exact here
    left_out = [c for k, c in truth.items() if k not in got]
    assert min(got.values()) >= max(left_out)  # the 5000 most frequent
    # IDF from document frequencies counted on the executors == counted locally.
    index = {k: i for i, k in enumerate(tuple(r[r != PAD]) for r in vocab.ngrams)}
    doc_freq = np.zeros(len(vocab), dtype=np.float64)
    for start, end in zip(offsets[:-1], offsets[1:]):
        one = exact_ngram_counts(ids[start:end], np.array([0, end - start], dtype=np.int64), 3)[0]
        for r in one.reshape(-1, 3):
            i = index.get(tuple(r[r != PAD]))
            if i is not None:
                doc_freq[i] += 1
    expected_idf = (np.log(len(texts)) - np.log(np.maximum(doc_freq, 1))).astype(np.float32)
    np.testing.assert_allclose(vocab.idf, expected_idf, rtol=1e-6)


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_heads_columns_equal_numpy_on_the_embeddings(spark, fixture_embedder, fixture_model_path, many_real_texts, tmp_path, precision):
    from test_heads import _close, _ids_match, _random_heads

    texts = many_real_texts[:1500]
    model = fixture_embedder.with_precision(precision)
    heads = _random_heads(64, fixture_embedder(texts[:300]))
    heads[0].save(tmp_path / "quality.npz")  # one given as a file, the rest as objects
    given = [tmp_path / "quality.npz", *heads[1:]]
    df = spark.createDataFrame(pa.table({"id": np.arange(len(texts)), "text": texts}).to_pandas()).repartition(3)
    rows = luxical.spark.embed_dataframe(df, "text", model=model, heads=given).orderBy("id").collect()
    emb = _embeddings(rows)
    np.testing.assert_array_equal(emb, model(texts))
    columns = [c for h in heads for c in h.columns]
    got = {c: np.array([r[c] for r in rows]) for c in columns}
    want = {k: v for h in heads for k, v in h.apply(emb).items()}
    _close(got, want, columns, f"spark/{precision}")
    _ids_match(heads[-1], emb, got, f"spark/{precision}")
    # only the head columns; a null row gets null head columns
    lean = luxical.spark.embed_dataframe(df, "text", model=model, heads=given, output_col=None).orderBy("id").collect()
    assert "embedding" not in lean[0].asDict()
    for c in columns:
        np.testing.assert_array_equal(np.array([r[c] for r in lean]), got[c], err_msg=c)
    nulls = spark.createDataFrame([(1, "first document"), (2, None)], "id long, text string")
    rows = luxical.spark.embed_dataframe(nulls, "text", model=model, heads=given, nulls="null").orderBy("id").collect()
    assert rows[1]["embedding"] is None and all(rows[1][c] is None for c in columns)
    assert rows[0]["domain_id"] == int(model.with_heads(*heads)(["first document"])["domain_id"][0])
    with pytest.raises(ValueError, match="output_col=None needs heads"):
        luxical.spark.embed_dataframe(df, "text", model=model, output_col=None)


def test_udf_with_heads_gives_a_struct_equal_to_numpy_on_its_embeddings(spark, fixture_embedder, fixture_model_path, many_real_texts, tmp_path):
    from test_heads import _close, _ids_match, _random_heads

    texts = many_real_texts[:1500]
    heads = _random_heads(fixture_embedder.dim, fixture_embedder(texts[:300]))
    heads[0].save(tmp_path / "quality.npz")  # one given as a file, the rest as objects
    given = [tmp_path / "quality.npz", *heads[1:]]
    columns = [c for h in heads for c in h.columns]
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "id long, text string").repartition(3)
    embed = luxical.spark.embed_udf(model=fixture_model_path, heads=given)
    scored = df.withColumn("out", embed("text"))
    struct = scored.schema["out"].dataType
    assert struct.fieldNames() == ["embedding", *columns]
    assert struct["domain_id"].dataType.simpleString() == "int" and struct["quality_score"].dataType.simpleString() == "float"
    rows = scored.select("id", "out.*").orderBy("id").collect()
    assert list(rows[0].asDict()) == ["id", "embedding", *columns]
    emb = _embeddings(rows)
    np.testing.assert_array_equal(emb, fixture_embedder(texts))
    got = {c: np.array([r[c] for r in rows]) for c in columns}
    want = {k: v for h in heads for k, v in h.apply(emb).items()}
    _close(got, want, columns, "spark udf")
    _ids_match(heads[-1], emb, got, "spark udf")
    # heads only, from a model made with heads; a null text gives a struct of nulls
    lean = luxical.spark.embed_udf(model=fixture_embedder.with_heads(*heads), embeddings=False, nulls="null")
    rows = df.withColumn("out", lean("text")).select("id", "out.*").orderBy("id").collect()
    assert list(rows[0].asDict()) == ["id", *columns]
    for c in columns:
        np.testing.assert_array_equal(np.array([r[c] for r in rows]), got[c], err_msg=c)
    nulls = spark.createDataFrame([(1, "first document"), (2, None)], "id long, text string")
    rows = nulls.withColumn("out", lean("text")).orderBy("id").collect()
    assert rows[1]["out"] is not None and all(v is None for v in rows[1]["out"].asDict().values())
    assert rows[0]["out"]["domain_id"] == int(fixture_embedder.with_heads(*heads)(["first document"])["domain_id"][0])
    with pytest.raises(ValueError, match="embeddings=False needs heads"):
        luxical.spark.embed_udf(model=fixture_model_path, embeddings=False)
