"""luxical.polars with the real polars package: eager, lazy and streaming frames, checked
against the core API (luxical.embed / Embedder) on the same texts."""

from __future__ import annotations

import numpy as np
import pytest

pl = pytest.importorskip("polars", reason="the Polars integration needs polars (installed by scripts/test.sh)")

import luxical  # noqa: E402
import luxical.polars  # noqa: E402
from luxical import heads as H  # noqa: E402
from luxical.quantize import INT8_SCALE, default_scale  # noqa: E402


def _multi_chunk(texts: list, chunk: int) -> pl.DataFrame:
    """A frame of several chunks, so that Polars calls the expression once per chunk."""
    parts = [pl.DataFrame({"id": np.arange(i, min(i + chunk, len(texts))), "text": texts[i : i + chunk]},
                          schema={"id": pl.Int64, "text": pl.String})
             for i in range(0, len(texts), chunk)]
    df = pl.concat(parts, rechunk=False)
    assert df.n_chunks() == len(parts)
    return df


def _matrix(col: pl.Series) -> np.ndarray:
    return col.to_numpy()


def test_expression_equals_luxical_embed(many_real_texts, fixture_model_path):
    df = _multi_chunk(many_real_texts, 3000)
    out = df.with_columns(emb=pl.col("text").luxical.embed(fixture_model_path, num_threads=2, batch_size=700))
    assert out.columns == ["id", "text", "emb"]
    assert out.schema["emb"] == pl.Array(pl.Float32, luxical.load(fixture_model_path).dim)
    got = _matrix(out["emb"])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, luxical.embed(many_real_texts, model=fixture_model_path))
    np.testing.assert_array_equal(out["id"].to_numpy(), np.arange(len(many_real_texts)))


def test_default_model():
    texts = ["Debian is a free operating system", "a library for parsing JSON", ""]
    out = pl.DataFrame({"text": texts}).select(pl.col("text").luxical.embed())
    np.testing.assert_array_equal(_matrix(out["text"]), luxical.embed(texts))


def test_lazy_frame_and_streaming_engine(many_real_texts, fixture_model_path, fixture_embedder):
    lf = (
        _multi_chunk(many_real_texts, 2500)
        .lazy()
        .filter(pl.col("id") % 3 != 0)
        .with_columns(emb=pl.col("text").luxical.embed(fixture_model_path, num_threads=1))
        .select("id", "emb")
    )
    # The return dtype is declared: the schema is known without computing anything.
    assert lf.collect_schema() == pl.Schema({"id": pl.Int64, "emb": pl.Array(pl.Float32, fixture_embedder.dim)})
    keep = [t for i, t in enumerate(many_real_texts) if i % 3 != 0]
    want = fixture_embedder(keep)
    for engine in ("in-memory", "streaming"):
        got = lf.collect(engine=engine).sort("id")
        assert got.height == len(keep)
        np.testing.assert_array_equal(_matrix(got["emb"]), want, err_msg=engine)


def test_embed_frame_lazy_stays_lazy(real_texts, fixture_model_path, fixture_embedder):
    lf = pl.LazyFrame({"doc": real_texts})
    out = luxical.polars.embed_frame(lf, "doc", "vec", model=fixture_model_path)
    assert isinstance(out, pl.LazyFrame)
    got = out.collect(engine="streaming")
    assert got.columns == ["doc", "vec"]
    np.testing.assert_array_equal(_matrix(got["vec"]), fixture_embedder(real_texts))


def test_nulls(fixture_model_path, fixture_embedder):
    texts = ["first document", None, "a third one", None, "fifth"]
    present = [t for t in texts if t is not None]
    want = fixture_embedder(present)
    rows = [i for i, t in enumerate(texts) if t is not None]
    df = pl.DataFrame({"text": texts})

    with pytest.raises(ValueError, match=r"column 'text' is null at row 1 .*2 nulls.*nulls=\"empty\""):
        df.with_columns(e=pl.col("text").luxical.embed(fixture_model_path))

    empty = _matrix(df.select(pl.col("text").luxical.embed(fixture_model_path, nulls="empty"))["text"])
    np.testing.assert_array_equal(empty[rows], want)
    assert not empty[[1, 3]].any()

    col = df.select(pl.col("text").luxical.embed(fixture_model_path, nulls="null"))["text"]
    assert col.null_count() == 2 and col.is_null().to_list() == [t is None for t in texts]
    np.testing.assert_array_equal(_matrix(col.drop_nulls()), want)

    # embed_frame on a DataFrame checks the whole column first: the row is the frame's.
    long = _multi_chunk(["text"] * 7 + [None] + ["more text"] * 4, 5)
    with pytest.raises(ValueError, match=r"column 'text' is null at row 7 \(1 nulls\)"):
        luxical.polars.embed_frame(long, model=fixture_model_path)

    # A column of nulls only has dtype Null.
    only = pl.DataFrame({"text": [None, None]})
    assert only.schema["text"] == pl.Null
    out = luxical.polars.embed_frame(only, model=fixture_model_path, nulls="null")
    assert out["embedding"].null_count() == 2


@pytest.mark.parametrize("lazy", [False, True])
def test_empty_frame(lazy, fixture_model_path, fixture_embedder):
    frame = pl.DataFrame({"text": []}, schema={"text": pl.String})
    out = luxical.polars.embed_frame(frame.lazy() if lazy else frame, model=fixture_model_path)
    got = out.collect() if lazy else out
    assert got.height == 0
    assert got.schema == pl.Schema({"text": pl.String, "embedding": pl.Array(pl.Float32, fixture_embedder.dim)})
    assert _matrix(got["embedding"]).shape == (0, fixture_embedder.dim)


def test_non_string_column_is_refused_naming_it(fixture_model_path):
    df = pl.DataFrame({"n": [1, 2], "text": ["a", "b"]})
    with pytest.raises(TypeError, match=r"column 'n' has dtype Int64, expected String"):
        df.with_columns(e=pl.col("n").luxical.embed(fixture_model_path))
    with pytest.raises(TypeError, match=r"column 'n' has dtype Int64, expected String"):
        luxical.polars.embed_frame(df, "n", model=fixture_model_path)
    with pytest.raises(TypeError, match=r"column 'n' has dtype Int64, expected String"):
        luxical.polars.embed_frame(df.lazy(), "n", model=fixture_model_path)
    with pytest.raises(KeyError, match=r"no column 'body' in the frame \(columns: \['n', 'text'\]\)"):
        luxical.polars.embed_frame(df, "body", model=fixture_model_path)


def test_categorical_column_embeds_its_strings(fixture_model_path, fixture_embedder):
    texts = ["spam", "eggs", "spam", "ham"]
    df = pl.DataFrame({"text": texts}, schema={"text": pl.Categorical})
    out = luxical.polars.embed_frame(df, model=fixture_model_path)
    np.testing.assert_array_equal(_matrix(out["embedding"]), fixture_embedder(texts))


def test_bad_options_fail_when_the_expression_is_built(fixture_model_path):
    with pytest.raises(ValueError, match="nulls must be"):
        pl.col("text").luxical.embed(fixture_model_path, nulls="skip")
    with pytest.raises(ValueError, match="quantize must be"):
        pl.col("text").luxical.embed(fixture_model_path, quantize="int4")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        pl.col("text").luxical.embed(fixture_model_path, batch_size=0)
    with pytest.raises(ValueError, match="embeddings=False needs heads"):
        pl.col("text").luxical.embed(fixture_model_path, embeddings=False)
    with pytest.raises(FileNotFoundError):
        pl.col("text").luxical.embed("no-such-model.npz")


@pytest.mark.parametrize(
    ("precision", "dtype", "width"),
    [("uint8", pl.UInt8, None), ("int8", pl.Int8, None), ("binary", pl.UInt8, 8)],
)
def test_quantize(precision, dtype, width, real_texts, fixture_model_path, fixture_embedder):
    df = pl.DataFrame({"text": real_texts})
    out = luxical.polars.embed_frame(df, model=fixture_model_path, quantize=precision)
    dim = fixture_embedder.dim
    assert out.schema["embedding"] == pl.Array(dtype, dim if width is None else dim // width)
    # int8 at the measured default scale (0.6), uint8 at the reference's 0.5
    want = luxical.quantize(fixture_embedder(real_texts), precision, scale=default_scale(precision))
    np.testing.assert_array_equal(_matrix(out["embedding"]), want)
    explicit = luxical.polars.embed_frame(df, model=fixture_model_path, quantize=precision, scale=0.3) if width is None else None
    if explicit is not None:
        np.testing.assert_array_equal(
            _matrix(explicit["embedding"]), luxical.quantize(fixture_embedder(real_texts), precision, scale=0.3)
        )
    else:
        with pytest.raises(ValueError, match="scale=0.3 applies to"):
            luxical.polars.embed_frame(df, model=fixture_model_path, quantize=precision, scale=0.3)


def test_int8_written_with_its_scale_and_dequantized_from_the_file(many_real_texts, tmp_path):
    """Polars columns carry no metadata: parquet_metadata() puts the record in the file,
    eager (write_parquet) and streaming (sink_parquet), and dequantize(path) reads it."""
    from test_quantize import assert_int8_file_round_trip

    texts = many_real_texts[:3000]
    df = _multi_chunk(texts, 1000)
    emb = luxical.embed(texts)  # the default model, on which INT8_SCALE was measured
    out = luxical.polars.embed_frame(df, quantize="int8").select("id", "embedding")
    out.write_parquet(tmp_path / "eager.parquet", metadata=luxical.polars.parquet_metadata(quantize="int8"))
    assert_int8_file_round_trip(tmp_path / "eager.parquet", emb, INT8_SCALE)
    lazy = luxical.polars.embed_frame(df.lazy(), quantize="int8", scale=0.45, num_threads=1).select("id", "embedding")
    lazy.sink_parquet(tmp_path / "lazy.parquet", metadata=luxical.polars.parquet_metadata(quantize="int8", scale=0.45))
    assert_int8_file_round_trip(tmp_path / "lazy.parquet", emb, 0.45)
    # A file written without the record holds bare codes: the scale is the caller's.
    out.write_parquet(tmp_path / "bare.parquet")
    np.testing.assert_array_equal(
        luxical.dequantize(tmp_path / "bare.parquet", scale=INT8_SCALE), luxical.dequantize(tmp_path / "eager.parquet")
    )
    with pytest.raises(ValueError, match=r"scale=0\.5 applies to quantize=\"int8\" or \"uint8\" only, not quantize='binary'"):
        luxical.polars.parquet_metadata(quantize="binary", scale=0.5)


def test_embedder_is_used_as_given(real_texts, fixture_embedder):
    """An int8 Embedder embeds in int8 (its outputs differ from float32 ones)."""
    int8 = fixture_embedder.with_precision("int8")
    got = _matrix(luxical.polars.embed_series(pl.Series("t", real_texts), int8))
    np.testing.assert_array_equal(got, int8(real_texts))
    assert not np.array_equal(got, fixture_embedder(real_texts))


def test_model_is_loaded_once_per_process(fixture_model_path):
    # The per-process cache's entries for this file at the default settings (other tests
    # may have cached it at other precisions).
    key = (str(fixture_model_path.resolve()), "float32", None)

    def entries() -> list:
        return [v for k, v in luxical._cache.items() if k[:3] == key]

    pl.col("text").luxical.embed(fixture_model_path)
    cached = entries()
    for _ in range(3):
        pl.DataFrame({"text": ["a b c"]}).select(pl.col("text").luxical.embed(fixture_model_path))
    assert len(cached) == 1 and entries() == cached and entries()[0] is luxical.load(fixture_model_path)


def _heads(dim: int) -> list[H.Head]:
    rng = np.random.default_rng(5)
    centroids = rng.normal(size=(6, dim))
    return [
        H.LinearHead(rng.normal(size=(3, dim)) * 3, rng.normal(size=3), labels=["a", "b", "c"],
                     activation="softmax", name="topic"),
        H.CentroidHead(centroids, coarse=np.array([0, 0, 1, 1, 2, 2]), name="cl"),
    ]


def test_heads(real_texts, fixture_model_path, fixture_embedder, tmp_path):
    heads = _heads(fixture_embedder.dim)
    heads[0].save(tmp_path / "topic.npz")
    texts = list(real_texts[:40]) + [None] + list(real_texts[40:80])
    present = [t for t in texts if t is not None]
    want = fixture_embedder.with_heads(*heads)(present)
    columns = ["topic_a", "topic_b", "topic_c", "cl_id", "cl_cosine", "cl_coarse_id"]
    assert list(want.columns) == columns

    df = _multi_chunk(texts, 30)
    for given in (heads, [tmp_path / "topic.npz", heads[1]]):
        out = luxical.polars.embed_frame(df.lazy(), model=fixture_model_path, heads=given, nulls="null").collect()
        assert out.columns == ["id", "text", "embedding", *columns]
        assert [out.schema[c] for c in columns] == [pl.Float32] * 3 + [pl.Int32, pl.Float32, pl.Int32]
        assert out["cl_id"].is_null().to_list() == [t is None for t in texts]
        kept = out.drop_nulls("text")
        np.testing.assert_array_equal(_matrix(kept["embedding"]), want.embeddings)
        for c in columns:
            np.testing.assert_array_equal(kept[c].to_numpy(), want[c], err_msg=c)

    only = luxical.polars.embed_frame(df.drop_nulls(), out=None, model=fixture_model_path, heads=heads)
    assert only.columns == ["id", "text", *columns]
    np.testing.assert_array_equal(only["topic_b"].to_numpy(), want["topic_b"])

    # The expression with heads is a Struct; a model made with heads brings its own.
    expr = pl.col("text").luxical.embed(fixture_embedder.with_heads(*heads))
    got = df.drop_nulls().select(expr.alias("s"))
    assert got.schema["s"] == pl.Struct(
        {"embedding": pl.Array(pl.Float32, fixture_embedder.dim)}
        | {c: t for c, t in zip(columns, [pl.Float32] * 3 + [pl.Int32, pl.Float32, pl.Int32])}
    )
    np.testing.assert_array_equal(got["s"].struct.field("cl_cosine").to_numpy(), want["cl_cosine"])

    with pytest.raises(ValueError, match=r"out='cl_id' is also a column of head 'cl'"):
        luxical.polars.embed_frame(df, out="cl_id", model=fixture_model_path, heads=heads)
    with pytest.raises(ValueError, match="out=None needs heads"):
        luxical.polars.embed_frame(df, out=None, model=fixture_model_path)


# --- the namespace's quantize / dequantize of embedding columns already in a frame -------


def _with_null_rows(emb: np.ndarray) -> tuple[list, list[int]]:
    """The rows of `emb` as lists, with a null row after every fifth one."""
    rows: list = []
    for i, row in enumerate(emb):
        rows.append(row.tolist())
        if i % 5 == 4:
            rows.append(None)
    return rows, [i for i, r in enumerate(rows) if r is not None]


@pytest.mark.parametrize(
    ("precision", "scale"), [("int8", None), ("int8", 0.3), ("uint8", None), ("uint8", 0.3), ("binary", None)]
)
def test_quantize_expression_equals_luxical_quantize(precision, scale, real_texts, fixture_embedder):
    """Eager, lazy and streaming; with and without dim=; null rows stay null; the codes
    equal luxical.quantize's (at the engines' default scale unless scale=), and
    dequantize equals luxical.dequantize of them."""
    emb = fixture_embedder(real_texts)
    dim = emb.shape[1]
    s = default_scale(precision) if scale is None else scale
    want = luxical.quantize(emb, precision, scale=s)
    back = luxical.dequantize(want, precision, scale=s, dim=dim)
    rows, present = _with_null_rows(emb)
    frame = pl.concat(  # several chunks: the expression is called once per chunk
        [pl.DataFrame({"id": np.arange(i, min(i + 40, len(rows))), "emb": rows[i : i + 40]},
                      schema={"id": pl.Int64, "emb": pl.Array(pl.Float32, dim)})
         for i in range(0, len(rows), 40)],
        rechunk=False,
    )
    code = pl.Int8 if precision == "int8" else pl.UInt8
    width = (dim + 7) // 8 if precision == "binary" else dim
    for given in (None, dim):
        q = pl.col("emb").luxical.quantize(precision, scale=scale, dim=given)
        lazy = frame.lazy().select("id", q=q).with_columns(
            f=pl.col("q").luxical.dequantize(precision, scale=scale, dim=given if given else None)
        )
        f_width = dim if given or precision != "binary" else 8 * width
        # The dtypes are known without computing anything.
        assert lazy.collect_schema() == pl.Schema(
            {"id": pl.Int64, "q": pl.Array(code, width), "f": pl.Array(pl.Float32, f_width)}
        )
        outs = {"eager": frame.select("id", q=q)} | {
            engine: lazy.collect(engine=engine).sort("id") for engine in ("in-memory", "streaming")
        }
        for how, out in outs.items():
            assert out["q"].is_null().to_list() == [r is None for r in rows], how
            np.testing.assert_array_equal(_matrix(out["q"].drop_nulls()), want, err_msg=f"{how} dim={given}")
            if "f" in out.columns:
                assert out["f"].null_count() == len(rows) - len(present)
                got = _matrix(out["f"].drop_nulls())
                np.testing.assert_array_equal(got, back if f_width == dim else luxical.dequantize(want, precision))


def test_quantize_from_list_columns(real_texts, fixture_embedder):
    """List(Float32 / Float64) rows (dim= tells the width), nulls kept; dequantize of
    List codes; the result is that of the numpy rows, float64 ones included."""
    emb = fixture_embedder(real_texts[:30]).astype(np.float64) * 0.999
    dim = emb.shape[1]
    rows, present = _with_null_rows(emb)
    for inner in (pl.Float32, pl.Float64):
        frame = pl.DataFrame({"emb": rows}, schema={"emb": pl.List(inner)})
        values = emb.astype(np.float32) if inner == pl.Float32 else emb
        for lazy in (False, True):
            q = (frame.lazy() if lazy else frame).select(q=pl.col("emb").luxical.quantize("int8", dim=dim))
            out = q.collect() if lazy else q
            assert out.schema["q"] == pl.Array(pl.Int8, dim)
            assert out["q"].is_null().to_list() == [r is None for r in rows]
            np.testing.assert_array_equal(
                _matrix(out["q"].drop_nulls()), luxical.quantize(values, "int8", scale=INT8_SCALE)
            )
    codes = luxical.quantize(emb, "binary")
    listed = pl.DataFrame({"c": [r.tolist() for r in codes]}, schema={"c": pl.List(pl.UInt8)})
    got = listed.select(pl.col("c").luxical.dequantize("binary", dim=dim))["c"]
    assert got.dtype == pl.Array(pl.Float32, dim)
    np.testing.assert_array_equal(_matrix(got), luxical.dequantize(codes, "binary", dim=dim))
    # A column of nulls only, and an empty frame.
    nulls = pl.DataFrame({"emb": [None, None]}).select(pl.col("emb").luxical.quantize("binary", dim=dim))["emb"]
    assert nulls.dtype == pl.Array(pl.UInt8, (dim + 7) // 8) and nulls.null_count() == 2
    empty = pl.DataFrame({"emb": []}, schema={"emb": pl.Array(pl.Float32, dim)})
    assert empty.select(pl.col("emb").luxical.quantize("uint8")).schema["emb"] == pl.Array(pl.UInt8, dim)


def test_embed_quantize_dequantize_round_trip(real_texts):
    """embed -> quantize -> dequantize in one lazy plan, the default model: within cosine
    0.999 of the float rows on every real text, and the codes equal embed(quantize=...)."""
    df = pl.DataFrame({"text": real_texts})
    lf = df.lazy().select(f=pl.col("text").luxical.embed()).with_columns(
        **{p: pl.col("f").luxical.quantize(p) for p in ("int8", "uint8")}
    ).with_columns(**{f"{p}_f": pl.col(p).luxical.dequantize(p) for p in ("int8", "uint8")})
    out = lf.collect(engine="streaming")
    emb = _matrix(out["f"])
    np.testing.assert_array_equal(emb, luxical.embed(real_texts))
    for p in ("int8", "uint8"):
        np.testing.assert_array_equal(
            _matrix(out[p]), _matrix(df.select(pl.col("text").luxical.embed(quantize=p))["text"]), err_msg=p
        )
        back = _matrix(out[f"{p}_f"])
        cos = (emb * back).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(back, axis=1)
        assert cos.min() >= 0.999, (p, cos.min())


def test_quantize_errors_name_the_column():
    ragged = pl.DataFrame({"e": [[0.6, 0.8], None, [1.0]]})
    with pytest.raises(ValueError, match=r"column 'e' row 2 of a batch of 3 rows holds 1 values, expected 2 \(dim=2\)"):
        ragged.select(pl.col("e").luxical.quantize("int8", dim=2))
    with pytest.raises(ValueError, match=r"column 'e' row \d+ of a batch of \d+ rows holds 1 values, expected 2 \(dim=2\)"):
        ragged.lazy().select(pl.col("e").luxical.quantize("int8", dim=2)).collect(engine="streaming")
    # A List column without dim: the output dtype cannot be known before the rows are
    # read, and Polars refuses the plan (8-bit: the dtype expression needs an Array;
    # binary: its inference fails on luxical's error).
    for precision in ("int8", "binary"):
        with pytest.raises(pl.exceptions.PolarsError):
            ragged.lazy().select(pl.col("e").luxical.quantize(precision)).collect_schema()
    ints = pl.DataFrame({"n": [[1, 2]]}, schema={"n": pl.Array(pl.Int64, 2)})
    with pytest.raises(TypeError, match=r"column 'n' has dtype Array\(Int64, shape=\(2,\)\), expected float embeddings"):
        ints.select(pl.col("n").luxical.quantize("int8"))
    with pytest.raises(TypeError, match=r"column 'n' has dtype String, expected float embeddings"):
        pl.LazyFrame({"n": ["a"]}).select(pl.col("n").luxical.quantize("binary", dim=2)).collect()
    with pytest.raises(ValueError, match=r"column 'e' has dtype Array\(Float32, shape=\(2,\)\): its rows hold 2 values, expected 3"):
        pl.DataFrame({"e": [[0.6, 0.8]]}, schema={"e": pl.Array(pl.Float32, 2)}).select(
            pl.col("e").luxical.quantize("uint8", dim=3)
        )
    with pytest.raises(ValueError, match=r"column 'e' holds 1 null values inside its rows"):
        pl.DataFrame({"e": [[0.6, None]]}, schema={"e": pl.Array(pl.Float32, 2)}).select(pl.col("e").luxical.quantize())
    floats = pl.DataFrame({"e": [[0.6, 0.8]]}, schema={"e": pl.Array(pl.Float32, 2)})
    with pytest.raises(TypeError, match=r"column 'e' has dtype Array\(Float32, shape=\(2,\)\), expected int8 codes"):
        floats.select(pl.col("e").luxical.dequantize("int8"))
    with pytest.raises(TypeError, match=r"column 'q' has dtype Array\(Int8, shape=\(2,\)\), expected uint8 codes"):
        floats.select(q=pl.col("e").luxical.quantize("int8")).select(pl.col("q").luxical.dequantize("uint8"))


def test_quantize_bad_options_fail_when_the_expression_is_built():
    for method in ("quantize", "dequantize"):
        build = getattr(pl.col("e").luxical, method)
        with pytest.raises(ValueError, match=r'precision must be "uint8", "int8" or "binary", got \'int4\''):
            build("int4")
        with pytest.raises(ValueError, match=r"scale must be a finite number > 0"):
            build("int8", scale=-1.0)
        with pytest.raises(ValueError, match=r"scale=0\.5 applies to quantize=\"int8\" or \"uint8\" only"):
            build("binary", scale=0.5)
        with pytest.raises(ValueError, match=r"dim must be a positive int"):
            build("int8", dim=0)
