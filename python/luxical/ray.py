"""Ray Data integration (needs ``ray[data]``).

::

    import ray, luxical.ray
    ds = ray.data.read_parquet("docs/")
    ds = ds.map_batches(
        luxical.ray.LuxicalEmbed,
        fn_constructor_kwargs={"model": "model.npz", "text_column": "text"},
        batch_format="pyarrow",
        concurrency=4,      # actors; each loads the model once
        num_cpus=2,         # cores per actor; the actor embeds with this many threads
    )

`LuxicalEmbed` is a callable class: Ray builds one per actor, so the model is loaded once
per actor, never per batch. The output keeps every input column and adds
``embedding`` (``list<float>``; ``list<int8>`` for int8 and ``binary`` rows for uint8 /
binary quantisation). With Arrow batches (``batch_format="pyarrow"``) the embedding
field's metadata and the schema metadata record precision, dim and scale (key
``luxical``, as ``luxical embed`` writes them); Ray keeps them in the blocks and in
``write_parquet``'s files (``select_columns`` drops the field's, the schema's stays), so
``luxical.dequantize(table_or_path)`` needs no arguments. pandas and numpy batches cannot
carry it: dequantise their codes with ``luxical.dequantize(codes, "int8", scale=S)``.
"""

from __future__ import annotations

import os
from typing import Any

import luxical
from collections.abc import Sequence

from luxical._columns import (
    arrow_field_metadata,
    arrow_schema_metadata,
    check_options,
    embed_column,
    embed_column_with_heads,
    head_arrow_columns,
    to_arrow_binary,
    to_arrow_list,
)
from luxical._luxical import DEFAULT_MAX_TOKENS
from luxical.embedder import Embedder
from luxical.heads import Head, resolve

__all__ = ["LuxicalEmbed"]


class LuxicalEmbed:
    """A ``map_batches`` callable class that embeds a text column.

    Args:
        model: Path of a ``.npz`` model (readable on every node), an `Embedder` (it reaches
            each actor as itself: by path with its precision, or by bytes), or None for the
            default model.
        text_column: The column to embed.
        output_column: The column added; None adds none (with `heads`: only their columns).
        nulls: ``"error"``, ``"empty"`` (zero vector) or ``"null"`` (null embedding).
        quantize: None, ``"int8"`` (``list<int8>``), ``"uint8"`` / ``"binary"``
            (``binary``). Arrow batches record precision, dim and scale in the field
            and schema metadata (see the module docstring).
        scale: Clipping limit of 8-bit codes (values beyond ±scale saturate); default
            :data:`luxical.quantize.INT8_SCALE` (0.6) for int8 (it was 0.5 before the
            scale was recorded; pass ``scale=0.5`` for the old codes) and 0.5 (the
            reference's) for uint8.
        num_threads: Threads per call; default: the CPUs Ray gave this actor
            (``num_cpus``), else 1.
        batch_size: Texts per native call.
        max_tokens: As in :meth:`luxical.Embedder.__call__`.
        heads: Heads (:mod:`luxical.heads` objects or head file paths readable on every
            node) computed in the same pass; each adds its columns (float32 scores and
            cosines, int32 ids; null where the embedding is null).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Embedder | None = None,
        text_column: str = "text",
        output_column: str | None = "embedding",
        *,
        nulls: str = "error",
        quantize: str | None = None,
        scale: float | None = None,
        num_threads: int | None = None,
        batch_size: int = 4096,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
        heads: Sequence[Head | str | os.PathLike[str]] | None = None,
    ) -> None:
        self.scale = check_options(nulls, quantize, max_tokens, scale)
        head_objs = resolve(heads or [])
        if output_column is None and not head_objs:
            raise ValueError("output_column=None needs heads (there would be no column to add)")
        self.model = luxical.load(model)
        if head_objs:
            self.model = self.model.with_heads(*head_objs)
        self.text_column = text_column
        self.output_column = output_column
        self.nulls = nulls
        self.quantize = quantize
        self.num_threads = num_threads if num_threads is not None else _actor_cpus()
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._field_metadata = arrow_field_metadata(self.model.dim, quantize, self.scale)

    def __call__(self, batch: Any) -> Any:
        """Embeds one batch: a ``pyarrow.Table`` (``batch_format="pyarrow"``), a
        ``pandas.DataFrame`` or a dict of numpy arrays; returns the same kind."""
        import pyarrow as pa

        if isinstance(batch, pa.Table):
            if self.text_column not in batch.column_names:
                raise KeyError(f"no column {self.text_column!r} in the batch (columns: {batch.column_names})")
            codes, mask, columns = self._embed(batch.column(self.text_column))
            if codes is not None:
                assert self.output_column is not None  # embeddings are computed only then
                if self.quantize in ("uint8", "binary"):
                    column = to_arrow_binary(codes, mask)
                else:
                    column = to_arrow_list(codes, mask)
                field = pa.field(self.output_column, column.type, metadata=self._field_metadata)
                batch = batch.append_column(field, column)
                batch = batch.replace_schema_metadata(arrow_schema_metadata(
                    batch.schema.metadata, self.output_column, self.model.dim, self.quantize, self.scale
                ))
            for name, values in zip(columns, head_arrow_columns(columns, mask)):
                batch = batch.append_column(name, values)
            return batch
        if self.text_column not in batch:
            raise KeyError(f"no column {self.text_column!r} in the batch (columns: {list(batch)})")
        codes, mask, columns = self._embed(batch[self.text_column])
        new: dict[str, Any] = {}
        if codes is not None:
            assert self.output_column is not None  # embeddings are computed only then
            rows: list[Any] = list(codes)
            if mask is not None:
                rows = [None if m else r for r, m in zip(rows, mask)]
            new[self.output_column] = rows if mask is not None or type(batch).__module__.startswith("pandas") else codes
        for name, values in columns.items():
            new[name] = values if mask is None else [None if m else v for v, m in zip(values.tolist(), mask)]
        if type(batch).__module__.startswith("pandas"):
            out = batch.copy()
            for name, values in new.items():
                out[name] = values
            return out
        out = dict(batch)
        out.update(new)
        return out

    def _embed(self, texts: Any) -> tuple[Any, Any, dict[str, Any]]:
        where = f"column {self.text_column!r} of this batch"
        if self.model.heads:
            return embed_column_with_heads(
                self.model, texts, nulls=self.nulls, quantize=self.quantize, scale=self.scale,
                num_threads=self.num_threads, batch_size=self.batch_size, max_tokens=self.max_tokens,
                where=where, embeddings=self.output_column is not None,
            )
        codes, mask = embed_column(
            self.model, texts, nulls=self.nulls, quantize=self.quantize, scale=self.scale,
            num_threads=self.num_threads, batch_size=self.batch_size, max_tokens=self.max_tokens,
            where=where,
        )
        return codes, mask, {}


def _actor_cpus() -> int:
    try:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        return max(1, int(cpus)) if cpus else 1
    except Exception:
        return 1
