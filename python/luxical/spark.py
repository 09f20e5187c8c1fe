"""Apache Spark integration (needs ``pyspark`` >= 3.3 and ``pyarrow``).

Embed a text column of a DataFrame::

    import luxical.spark
    out = luxical.spark.embed_dataframe(df, "text", model="model.npz")
    # every input column, plus "embedding": array<float>

or as a column expression (with ``heads=``: a struct of the embedding and the heads'
columns)::

    embed = luxical.spark.embed_udf(model="model.npz")
    df.withColumn("embedding", embed("text"))

Quantised outputs (``quantize="int8"``, at :data:`luxical.quantize.INT8_SCALE` unless
``scale=`` says otherwise) record their precision, scale and dim in the column's
``StructField`` metadata under ``"luxical"``; ``df.write.parquet`` keeps it in the files,
so ``luxical.dequantize("out.parquet")`` reads the codes back with no arguments.

Build a vocabulary on the cluster (one Space-Saving summary per partition, merged in a
tree on the executors)::

    vocab = luxical.spark.build_vocabulary(df, "text", tokenizer_json, vocab_size=2_000_000)

How it runs: the model file is shipped once to every node with ``SparkContext.addFile``
(the default model ships inside the wheel and is not shipped; an in-memory `Embedder` is
shipped as the file of its bytes), loaded once per Python worker process (Spark reuses
workers; the load is cached per process, never pickled per row or per batch) with the
given `Embedder`'s precision, and each task embeds with ``spark.task.cpus`` threads so
executors are not oversubscribed. ``max_tokens`` is that of :meth:`luxical.Embedder.__call__`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

import luxical
from luxical._columns import (
    check_options,
    embed_column,
    embed_column_with_heads,
    embedding_record,
    head_arrow_columns,
    to_arrow_binary,
    to_arrow_list,
)
from luxical._luxical import DEFAULT_MAX_TOKENS
from luxical.embedder import Embedder
from luxical.quantize import METADATA_KEY

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from luxical._luxical import SpaceSaving
    from luxical.heads import Head
    from luxical.training.vocab import NgramVocabulary

__all__ = ["EMBEDDING_FIELD", "build_vocabulary", "count_ngrams", "document_frequencies", "embed_dataframe", "embed_udf"]

#: The struct field holding the embeddings when :func:`embed_udf` computes heads too.
EMBEDDING_FIELD = "embedding"

#: The key of luxical's record in a Spark column's metadata (``StructField.metadata``).
METADATA_NAME = METADATA_KEY.decode()


class ModelRef(NamedTuple):
    """How a worker finds and loads the model: everything that defines the embedder."""

    #: "default" (the model in the wheel), "sparkfile" (shipped with addFile) or "path"
    kind: str
    #: None, the shipped file's name, or an absolute path
    value: str | None
    precision: str = "float32"


def _ship_model(spark: Any, model: str | os.PathLike[str] | Embedder | None) -> ModelRef:
    """Makes `model` reachable from every executor; returns how a worker finds it."""
    if model is None:
        return ModelRef("default", None)
    staging = Path(tempfile.gettempdir()) / "luxical-spark"
    data: bytes | None = None
    precision = "float32"
    if isinstance(model, Embedder):
        # The Embedder's own pickle says what defines it: the file it still reads from (or
        # else its bytes) and its precision. (Memory mapping does not change results and
        # is left to the workers' default, so that one worker process caches one copy of
        # a model whether it was given as a path or as an Embedder.)
        state = model.__getstate__()
        precision = state.get("precision", "float32")
        if "path" in state:
            path = Path(state["path"])
            if _is_default_model(path):
                return ModelRef("default", None, precision)
        else:  # built in memory, or its file changed: its bytes are the file to ship
            data = state["bytes"]
            path = Path("in-memory.npz")
    else:
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
    # Name the shipped copy by content so two models with the same base name, or a file
    # rewritten between jobs, never collide in SparkFiles.
    digest = hashlib.sha256(data).hexdigest() if data is not None else _file_digest(path)
    name = f"{path.stem}-{digest[:16]}{path.suffix}"
    staged = staging / name
    if not staged.is_file():
        staging.mkdir(parents=True, exist_ok=True)
        tmp = staged.with_suffix(f".{os.getpid()}.tmp")
        if data is not None:
            tmp.write_bytes(data)
        else:
            shutil.copyfile(path, tmp)
        os.replace(tmp, staged)
    sc = spark.sparkContext
    shipped = getattr(sc, "_luxical_shipped", None)
    if shipped is None:
        shipped = set()
        sc._luxical_shipped = shipped
    if name not in shipped:
        sc.addFile(str(staged))
        shipped.add(name)
    return ModelRef("sparkfile", name, precision)


def _is_default_model(path: Path) -> bool:
    try:
        return path.resolve() == luxical.default_model_path().resolve()
    except FileNotFoundError:
        return False


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _worker_model(ref: ModelRef) -> Embedder:
    """The model inside a Python worker, loaded once per process (``luxical.load`` cache)."""
    if ref.kind == "default":
        return luxical.load(None, precision=ref.precision)
    if ref.kind == "sparkfile":
        from pyspark import SparkFiles

        return luxical.load(SparkFiles.get(ref.value), precision=ref.precision)
    return luxical.load(ref.value, precision=ref.precision)


def _task_threads(num_threads: int | None) -> int:
    """Threads for this task: explicit, else the task's ``spark.task.cpus``."""
    if num_threads is not None:
        return num_threads
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None:
        return 1
    try:
        return max(1, int(ctx.cpus()))
    except Exception:  # older Spark without TaskContext.cpus()
        return max(1, int(ctx.getLocalProperty("spark.task.cpus") or 1))


def _embedding_type(quantize: str | None) -> Any:
    from pyspark.sql.types import ArrayType, BinaryType, ByteType, FloatType

    if quantize is None:
        return ArrayType(FloatType(), containsNull=False)
    if quantize == "int8":
        return ArrayType(ByteType(), containsNull=False)
    return BinaryType()  # uint8 codes / packed sign bits, one byte string per row


def _arrow_embedding(codes: np.ndarray, mask: np.ndarray | None, quantize: str | None) -> Any:
    if quantize in ("uint8", "binary"):
        return to_arrow_binary(codes, mask)
    return to_arrow_list(codes, mask)


def embed_dataframe(
    df: DataFrame,
    text_col: str = "text",
    *,
    model: str | os.PathLike[str] | Embedder | None = None,
    output_col: str | None = "embedding",
    nulls: str = "error",
    quantize: str | None = None,
    scale: float | None = None,
    num_threads: int | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    heads: Sequence[Head | str | os.PathLike[str]] | None = None,
) -> DataFrame:
    """Adds an embedding column to `df` (lazily, like any transformation).

    Runs as one ``mapInArrow`` pass: every input column is kept, row order and partitioning
    are unchanged.

    Args:
        df: The DataFrame.
        text_col: Name of its string column to embed.
        model: Path of a ``.npz`` model, an `Embedder` (its precision is kept; one built
            in memory is shipped as its bytes), or None for the default model.
        output_col: Name of the added column; None adds no embedding column (with
            `heads`: only their columns).
        nulls: A null text: ``"error"`` fails the task naming the row, ``"empty"`` embeds
            it as a zero vector, ``"null"`` gives a null embedding.
        quantize: None (``array<float>``), ``"int8"`` (``array<tinyint>``), or ``"uint8"``
            / ``"binary"`` (``binary``: the codes of one row as bytes; see
            :func:`luxical.quantize`). The column's ``StructField`` metadata records
            ``{"luxical": {"precision", "dim", "scale"}}`` (also for float output);
            ``df.write.parquet`` stores it, and ``luxical.dequantize(path)`` reads it.
            Collected codes without it: ``luxical.dequantize(codes, "int8", scale=S)``.
        scale: Clipping limit of 8-bit codes (values beyond ±scale saturate); default
            :data:`luxical.quantize.INT8_SCALE` (0.6) for int8 (it was 0.5 before the
            scale was recorded; pass ``scale=0.5`` for the old codes) and 0.5 (the
            reference's) for uint8.
        num_threads: Threads per task; default ``spark.task.cpus``.
        batch_size: Texts per native call within an Arrow batch.
        max_tokens: Each document is embedded from its first `max_tokens` tokens (see
            :meth:`luxical.Embedder.__call__`).
        heads: Heads (:mod:`luxical.heads` objects or head file paths, read here on the
            driver and shipped by value) computed in the same pass: each adds its columns
            (``float`` scores and cosines, ``int`` ids; null where the embedding is null).

    Returns:
        A DataFrame with the columns of `df`, `output_col` and the heads' columns.

    Raises:
        ValueError: a bad option value (`scale` with a precision that has none, or not
            > 0), a missing `text_col`, an existing column named as an added one.
        TypeError: `text_col` is not a string column.
    """
    from pyspark.sql.types import StringType, StructField, StructType

    from luxical.heads import resolve

    scale = check_options(nulls, quantize, max_tokens, scale)
    if heads is None and isinstance(model, Embedder):
        heads = model.heads  # an Embedder made with with_heads() keeps its heads
    head_objs = resolve(heads or [])
    if output_col is None and not head_objs:
        raise ValueError("output_col=None needs heads (there would be no column to add)")
    if text_col not in df.columns:
        raise ValueError(f"no column {text_col!r} in the DataFrame (columns: {df.columns})")
    head_fields = _head_fields(head_objs)
    for name in [output_col, *(f.name for f in head_fields)]:
        if name is not None and name in df.columns:
            raise ValueError(f"the DataFrame already has a column {name!r}; pass another output_col or rename the head")
    if not isinstance(df.schema[text_col].dataType, StringType):
        raise TypeError(f"column {text_col!r} is {df.schema[text_col].dataType.simpleString()}, expected string")
    ref = _ship_model(df.sparkSession, model)
    dim = model.dim if isinstance(model, Embedder) else luxical.load(model).dim
    record = {METADATA_NAME: embedding_record(dim, quantize, scale)}
    added = [] if output_col is None else [StructField(output_col, _embedding_type(quantize), nullable=True, metadata=record)]
    schema = StructType([*df.schema.fields, *added, *head_fields])
    names_added = ([] if output_col is None else [output_col]) + [f.name for f in head_fields]

    def embed_batches(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        embedder = _worker_model(ref)
        if head_objs:
            embedder = embedder.with_heads(*head_objs)
        threads = _task_threads(num_threads)
        for batch in batches:
            texts = batch.column(batch.schema.get_field_index(text_col))
            where = f"column {text_col!r} of this batch"
            if head_objs:
                codes, mask, columns = embed_column_with_heads(
                    embedder, texts, nulls=nulls, quantize=quantize, scale=scale, num_threads=threads, batch_size=batch_size,
                    max_tokens=max_tokens, where=where, embeddings=output_col is not None,
                )
                new = [] if codes is None else [_arrow_embedding(codes, mask, quantize)]
                new += head_arrow_columns(columns, mask)
            else:
                codes, mask = embed_column(
                    embedder, texts, nulls=nulls, quantize=quantize, scale=scale, num_threads=threads,
                    batch_size=batch_size, max_tokens=max_tokens, where=where,
                )
                new = [_arrow_embedding(codes, mask, quantize)]
            yield pa.RecordBatch.from_arrays([*batch.columns, *new], names=[*batch.schema.names, *names_added])

    return df.mapInArrow(embed_batches, schema)


def _head_fields(heads: Sequence[Head]) -> list[Any]:
    from pyspark.sql.types import FloatType, IntegerType, StructField

    return [
        StructField(c, IntegerType() if h.kind == "centroid" and c.endswith("_id") else FloatType(), nullable=True)
        for h in heads
        for c in h.columns
    ]


def embed_udf(
    *,
    model: str | os.PathLike[str] | Embedder | None = None,
    heads: Sequence[Head | str | os.PathLike[str]] | None = None,
    embeddings: bool = True,
    nulls: str = "error",
    num_threads: int | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> Any:
    """A ``pandas_udf`` for ``df.withColumn(name, udf(text_column))``: ``array<float>``,
    or with heads a struct of ``"embedding"`` (:data:`EMBEDDING_FIELD`) and the heads'
    columns, which ``df.select("*", f"{name}.*")`` turns into columns.

    Must be called with an active SparkSession (the model file is shipped to the
    executors). :func:`embed_dataframe` is faster (no pandas round trip), and is the way to
    quantised outputs (a UDF's return type has no room for the scale's record).

    Args:
        model: As in :func:`embed_dataframe`.
        heads: Heads (:mod:`luxical.heads` objects or head file paths, read here on the
            driver and shipped by value) computed in the same pass; None: those of `model`
            (an `Embedder` made by :meth:`luxical.Embedder.with_heads`), if any. The UDF
            then returns a struct: ``embedding`` (unless ``embeddings=False``) and one
            field per head column (``float`` scores and cosines, ``int`` ids).
        embeddings: With heads only: False leaves the ``embedding`` field out.
        nulls: As in :func:`embed_dataframe`; under ``"null"`` a null text gives a null
            array, or with heads a struct whose fields are all null.
        num_threads: Threads per task; default ``spark.task.cpus``.
        batch_size: Texts per native call.
        max_tokens: As in :meth:`luxical.Embedder.__call__`.

    Returns:
        The UDF (a ``pyspark`` ``UserDefinedFunction``), applied to a string column.

    Raises:
        RuntimeError: no active SparkSession.
        ValueError: a bad option value, or ``embeddings=False`` without heads.
    """
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import StructField, StructType

    from luxical.heads import resolve

    check_options(nulls, None, max_tokens)
    if heads is None and isinstance(model, Embedder):
        heads = model.heads  # an Embedder made with with_heads() keeps its heads
    head_objs = resolve(heads or [])
    if not embeddings and not head_objs:
        raise ValueError("embeddings=False needs heads (there would be no field to return)")
    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError("embed_udf needs an active SparkSession")
    ref = _ship_model(spark, model)
    return_type: Any = _embedding_type(None)
    if head_objs:
        embedding_field = [StructField(EMBEDDING_FIELD, _embedding_type(None), nullable=True)] if embeddings else []
        return_type = StructType([*embedding_field, *_head_fields(head_objs)])

    import typing

    import pandas as pd

    def rows_of(emb: np.ndarray, mask: np.ndarray | None) -> list[Any]:
        rows: list[Any] = list(emb)
        if mask is not None:
            for i in np.flatnonzero(mask):
                rows[i] = None
        return rows

    def luxical_embed(batches: Iterator[Any]) -> Iterator[Any]:
        embedder = _worker_model(ref)
        if head_objs:
            embedder = embedder.with_heads(*head_objs)
        threads = _task_threads(num_threads)
        for texts in batches:
            if not head_objs:
                emb, mask = embed_column(
                    embedder, texts, nulls=nulls, num_threads=threads, batch_size=batch_size, max_tokens=max_tokens
                )
                yield pd.Series(rows_of(emb, mask), index=texts.index)
                continue
            codes, mask, columns = embed_column_with_heads(
                embedder, texts, nulls=nulls, num_threads=threads, batch_size=batch_size, max_tokens=max_tokens,
                embeddings=embeddings,
            )
            data: dict[str, Any] = {}
            if codes is not None:
                data[EMBEDDING_FIELD] = pd.Series(rows_of(codes, mask), index=texts.index, dtype=object)
            for name, values in columns.items():
                col = pd.array(values, dtype="Int32" if values.dtype == np.int32 else "Float32")
                if mask is not None:
                    col[mask] = pd.NA
                data[name] = pd.Series(col, index=texts.index)
            yield pd.DataFrame(data, index=texts.index)

    # Spark picks the UDF kind (iterator of Series → iterator of Series, or of DataFrames
    # for a struct: one model lookup per task, not per batch) from resolved type hints.
    out_hint = typing.Iterator[pd.DataFrame] if head_objs else typing.Iterator[pd.Series]
    luxical_embed.__annotations__ = {"batches": typing.Iterator[pd.Series], "return": out_hint}
    return pandas_udf(return_type)(luxical_embed)  # type: ignore[call-overload]


def count_ngrams(
    df: DataFrame,
    text_col: str,
    tokenizer_json: str,
    *,
    max_ngram_len: int = 5,
    capacity: int = 4_000_000,
    num_threads: int | None = None,
) -> SpaceSaving:
    """Space-Saving summary of the 1..max_ngram_len-grams of a text column, computed per
    partition on the executors and merged in a tree (``treeReduce``). Null texts are
    skipped. Counts are exact when the distinct n-grams fit in `capacity`; otherwise each
    count is within the summary's ``error_bound`` (see :func:`luxical.training.count_ngrams`).
    """
    from pyspark.sql.types import BinaryType, StructField, StructType

    from luxical._luxical import SpaceSaving

    if text_col not in df.columns:
        raise ValueError(f"no column {text_col!r} in the DataFrame (columns: {df.columns})")
    SpaceSaving(1, max_ngram_len)  # validates max_ngram_len on the driver

    def summarise(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        from luxical._luxical import SpaceSaving, Tokenizer

        tokenizer = Tokenizer(tokenizer_json)
        summary = SpaceSaving(capacity, max_ngram_len)
        threads = _task_threads(num_threads)
        for batch in batches:
            texts = batch.column(0).drop_null().to_pylist()
            if texts:
                summary.update(tokenizer, texts, threads)
        yield pa.RecordBatch.from_arrays([pa.array([summary.to_bytes()], pa.binary())], names=["summary"])

    schema = StructType([StructField("summary", BinaryType(), nullable=False)])
    summaries = df.select(text_col).mapInArrow(summarise, schema).rdd.map(lambda row: bytes(row[0]))
    if summaries.isEmpty():
        return SpaceSaving(capacity, max_ngram_len)
    return SpaceSaving.from_bytes(summaries.treeReduce(_merge_summaries))


def _merge_summaries(a: bytes, b: bytes) -> bytes:
    from luxical._luxical import SpaceSaving

    merged = SpaceSaving.from_bytes(a)
    merged.merge(SpaceSaving.from_bytes(b))
    return merged.to_bytes()


def build_vocabulary(
    df: DataFrame,
    text_col: str,
    tokenizer_json: str,
    *,
    vocab_size: int,
    max_ngram_len: int = 5,
    capacity: int = 4_000_000,
    min_count: int = 2,
    idf: str = "pseudo",
    num_threads: int | None = None,
) -> NgramVocabulary:
    """The n-gram vocabulary of a text column, built on the cluster: :func:`count_ngrams`,
    then the selection of :func:`luxical.training.select_vocabulary`. With ``idf="df"``
    the document frequencies are counted in a second distributed pass (summed per
    partition on the executors).
    """
    from luxical.training.vocab import NgramVocabulary, select_vocabulary

    if idf not in ("pseudo", "df"):
        raise ValueError(f'idf must be "df" or "pseudo", got {idf!r}')
    summary = count_ngrams(
        df, text_col, tokenizer_json, max_ngram_len=max_ngram_len, capacity=capacity, num_threads=num_threads
    )
    vocab = select_vocabulary(summary, None, tokenizer_json, vocab_size=vocab_size, min_count=min_count, idf="pseudo")
    if idf == "pseudo":
        return vocab
    n_docs, df_counts = document_frequencies(df, text_col, tokenizer_json, vocab.ngrams, num_threads=num_threads)
    idf_values = (np.log(max(n_docs, 1)) - np.log(np.maximum(df_counts, 1.0))).astype(np.float32)
    return NgramVocabulary(ngrams=vocab.ngrams, counts=vocab.counts, idf=idf_values)


def document_frequencies(
    df: DataFrame,
    text_col: str,
    tokenizer_json: str,
    ngrams: np.ndarray,
    *,
    num_threads: int | None = None,
) -> tuple[int, np.ndarray]:
    """``(number of non-null texts, float64 document frequency of each n-gram)`` over a
    text column, counted per partition on the executors and summed in a tree."""
    from pyspark.sql.types import BinaryType, LongType, StructField, StructType

    ngrams = np.ascontiguousarray(ngrams, dtype=np.uint32)
    if ngrams.ndim != 2:
        raise ValueError(f"ngrams must be (V, max_ngram_len), got shape {ngrams.shape}")
    n_ngrams, max_len = ngrams.shape

    def count(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        from luxical._luxical import Featurizer

        featurizer = Featurizer(tokenizer_json, ngrams.ravel(), max_len, np.ones(n_ngrams, dtype=np.float32))
        threads = _task_threads(num_threads)
        total = np.zeros(n_ngrams, dtype=np.float64)
        docs = 0
        for batch in batches:
            texts = batch.column(0).drop_null().to_pylist()
            if texts:
                total += featurizer.document_frequencies(texts, threads)
                docs += len(texts)
        yield pa.RecordBatch.from_arrays(
            [pa.array([docs], pa.int64()), pa.array([total.tobytes()], pa.binary())], names=["docs", "df"]
        )

    schema = StructType([StructField("docs", LongType(), False), StructField("df", BinaryType(), False)])
    parts = df.select(text_col).mapInArrow(count, schema).rdd.map(
        lambda row: (int(row[0]), np.frombuffer(bytes(row[1]), dtype=np.float64))
    )
    if parts.isEmpty():
        return 0, np.zeros(n_ngrams, dtype=np.float64)
    docs, total = parts.treeReduce(lambda a, b: (a[0] + b[0], a[1] + b[1]))
    return docs, np.asarray(total, dtype=np.float64)
