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
``embedding`` (``list<float>``; ``binary`` rows for uint8/binary quantisation).
"""

from __future__ import annotations

import os
from typing import Any

import luxical
from luxical._columns import check_options, embed_column, to_arrow_binary, to_arrow_list
from luxical._luxical import DEFAULT_MAX_TOKENS
from luxical.embedder import Embedder

__all__ = ["LuxicalEmbed"]


class LuxicalEmbed:
    """A ``map_batches`` callable class that embeds a text column.

    Args:
        model: Path of a ``.npz`` model (readable on every node), an `Embedder` (it reaches
            each actor as itself: by path with its precision, or by bytes), or None for the
            default model.
        text_column: The column to embed.
        output_column: The column added.
        nulls: ``"error"``, ``"empty"`` (zero vector) or ``"null"`` (null embedding).
        quantize: None, ``"int8"`` (``list<int8>``), ``"uint8"`` / ``"binary"``
            (``binary``).
        num_threads: Threads per call; default: the CPUs Ray gave this actor
            (``num_cpus``), else 1.
        batch_size: Texts per native call.
        max_tokens: As in :meth:`luxical.Embedder.__call__`.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Embedder | None = None,
        text_column: str = "text",
        output_column: str = "embedding",
        *,
        nulls: str = "error",
        quantize: str | None = None,
        num_threads: int | None = None,
        batch_size: int = 4096,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
    ) -> None:
        check_options(nulls, quantize, max_tokens)
        self.model = luxical.load(model)
        self.text_column = text_column
        self.output_column = output_column
        self.nulls = nulls
        self.quantize = quantize
        self.num_threads = num_threads if num_threads is not None else _actor_cpus()
        self.batch_size = batch_size
        self.max_tokens = max_tokens

    def __call__(self, batch: Any) -> Any:
        """Embeds one batch: a ``pyarrow.Table`` (``batch_format="pyarrow"``), a
        ``pandas.DataFrame`` or a dict of numpy arrays; returns the same kind."""
        import pyarrow as pa

        if isinstance(batch, pa.Table):
            if self.text_column not in batch.column_names:
                raise KeyError(f"no column {self.text_column!r} in the batch (columns: {batch.column_names})")
            codes, mask = self._embed(batch.column(self.text_column))
            if self.quantize in ("uint8", "binary"):
                column = to_arrow_binary(codes, mask)
            else:
                column = to_arrow_list(codes, mask)
            return batch.append_column(self.output_column, column)
        if self.text_column not in batch:
            raise KeyError(f"no column {self.text_column!r} in the batch (columns: {list(batch)})")
        codes, mask = self._embed(batch[self.text_column])
        rows: list[Any] = list(codes)
        if mask is not None:
            rows = [None if m else r for r, m in zip(rows, mask)]
        if type(batch).__module__.startswith("pandas"):
            out = batch.copy()
            out[self.output_column] = rows
            return out
        out = dict(batch)
        out[self.output_column] = codes if mask is None else rows
        return out

    def _embed(self, texts: Any) -> Any:
        return embed_column(
            self.model, texts, nulls=self.nulls, quantize=self.quantize,
            num_threads=self.num_threads, batch_size=self.batch_size, max_tokens=self.max_tokens,
            where=f"column {self.text_column!r} of this batch",
        )


def _actor_cpus() -> int:
    try:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        return max(1, int(cpus)) if cpus else 1
    except Exception:
        return 1
