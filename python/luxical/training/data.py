"""Reading training corpora: Parquet (a text column), JSONL (a text field) or plain text
(one document per line)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path


def iter_texts(paths: Iterable[str | os.PathLike[str]], *, text_column: str = "text") -> Iterator[str]:
    """Yields the documents of each file in order. Null/empty documents are skipped (a
    document without text teaches nothing); a missing column or field, or a JSON value
    that is not a string, raises ValueError naming the file (and line); a non-string
    Parquet column raises ValueError."""
    for text, _ in iter_rows(paths, text_column=text_column):
        yield text


def iter_rows(
    paths: Iterable[str | os.PathLike[str]], *, text_column: str = "text", source_column: str | None = None
) -> Iterator[tuple[str, str | None]]:
    """Like `iter_texts`, with each document's `source_column` value as text (None when no
    source column is asked for, or the value is null). Plain-text files have no columns:
    their source is the file name."""
    for p in paths:
        path = Path(p)
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            for column in (text_column, source_column):
                if column is not None and column not in names:
                    raise ValueError(f"{path}: no column {column!r} (columns: {names})")
            column_type = pf.schema_arrow.field(text_column).type
            if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
                raise ValueError(f"{path}: column {text_column!r} is {column_type}, expected string")
            columns = [text_column] if source_column is None else [text_column, source_column]
            for batch in pf.iter_batches(columns=columns, batch_size=8192):
                texts = batch.column(0).to_pylist()
                sources = batch.column(1).to_pylist() if source_column is not None else [None] * len(texts)
                for t, src in zip(texts, sources):
                    if t:
                        yield t, None if src is None else str(src)
        elif suffix in (".jsonl", ".json", ".ndjson"):
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    if text_column not in row:
                        raise ValueError(f"{path}:{lineno}: no field {text_column!r}")
                    if source_column is not None and source_column not in row:
                        raise ValueError(f"{path}:{lineno}: no field {source_column!r}")
                    text = row[text_column]
                    if text is not None and not isinstance(text, str):
                        raise ValueError(f"{path}:{lineno}: field {text_column!r} is {type(text).__name__}, expected a string or null")
                    if text:
                        src = row[source_column] if source_column is not None else None
                        yield text, None if src is None else str(src)
        else:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    line = line.rstrip("\n")
                    if line.strip():
                        yield line, (path.name if source_column is not None else None)


def read_texts(paths: Iterable[str | os.PathLike[str]], *, text_column: str = "text", limit: int | None = None) -> list[str]:
    out: list[str] = []
    for t in iter_texts(paths, text_column=text_column):
        if limit is not None and len(out) >= limit:
            break
        out.append(t)
    return out


def load_corpus(
    paths: Iterable[str | os.PathLike[str]],
    *,
    text_column: str = "text",
    limit: int | None = None,
    seed: int = 0,
) -> list[str]:
    """All documents of `paths`, exact duplicates dropped, in a seeded random order, the
    first `limit` of them. Any prefix is a uniform sample, and a smaller `limit` gives a
    prefix of a larger one (so teacher caches of a small run are reused by a larger one)."""
    import numpy as np

    seen: set[str] = set()
    texts: list[str] = []
    for t in iter_texts(paths, text_column=text_column):
        if t not in seen:
            seen.add(t)
            texts.append(t)
    order = np.random.default_rng(seed).permutation(len(texts))
    if limit is not None:
        order = order[:limit]
    return [texts[i] for i in order]


def load_corpus_rows(
    paths: Iterable[str | os.PathLike[str]],
    *,
    text_column: str = "text",
    source_column: str | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> tuple[list[str], list[str | None] | None]:
    """`load_corpus` with each document's source (the first row's, for a duplicated text):
    ``(texts, sources)``, sources None when `source_column` is None. Same order as
    `load_corpus` with the same arguments."""
    import numpy as np

    seen: dict[str, int] = {}
    texts: list[str] = []
    sources: list[str | None] = []
    for t, src in iter_rows(paths, text_column=text_column, source_column=source_column):
        if t not in seen:
            seen[t] = len(texts)
            texts.append(t)
            sources.append(src)
    order = np.random.default_rng(seed).permutation(len(texts))
    if limit is not None:
        order = order[:limit]
    return [texts[i] for i in order], (None if source_column is None else [sources[i] for i in order])


def sample_windows(
    texts: Sequence[str],
    n: int,
    *,
    min_words: int = 6,
    max_words: int = 48,
    seed: int = 0,
) -> list[str]:
    """`n` distinct sentence-sized windows cut from `texts`, in a seeded order.

    A window is a run of consecutive sentences of a random document (sentences end at
    ``.``, ``!``, ``?`` or a blank line), starting at a random sentence, grown until it holds
    a target number of words drawn uniformly from ``[min_words, max_words]``; a window that
    grows past `max_words` (a long sentence) is cut to the target. Windows under `min_words`
    words are not kept. Fewer than `n` come back when the texts do not hold that many
    distinct windows (the draws stop after ``min(20 * n, 50 * len(texts) + n)``).

    Short windows give the teacher's signal at the scale of the texts users compare most
    (titles, synopses, definitions, sentences) and cost the teacher far less per example
    than whole documents.
    """
    import re

    import numpy as np

    if n <= 0 or not texts:
        return []
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    splitter = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen: set[str] = set()
    split: dict[int, list[list[str]]] = {}
    for _ in range(min(20 * n, 50 * len(texts) + n)):
        if len(out) >= n:
            break
        i = int(rng.integers(len(texts)))
        sentences = split.get(i)
        if sentences is None:
            sentences = [w for w in (s.split() for s in splitter.split(texts[i])) if w]
            if len(texts) <= 10_000:  # small corpora are drawn from again and again
                split[i] = sentences
        if not sentences:
            continue
        target = int(rng.integers(min_words, max_words + 1))
        words: list[str] = []
        for s in sentences[int(rng.integers(len(sentences))) :]:
            words.extend(s)
            if len(words) >= target:
                break
        words = words[:target] if len(words) > max_words else words
        if len(words) < min_words:
            continue
        window = " ".join(words)
        if window not in seen:
            seen.add(window)
            out.append(window)
    return out
