"""Vocabulary building: approximate n-gram counts (Space-Saving, Rust core) → selection →
IDF."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from luxical._luxical import Featurizer, SpaceSaving, Tokenizer

PAD = np.uint32(2**32 - 1)


@dataclass(frozen=True)
class NgramVocabulary:
    """Selected n-grams (uint32 ``(V, max_ngram_len)``, padded) with their counts and IDF."""

    ngrams: np.ndarray
    counts: np.ndarray
    idf: np.ndarray

    def __len__(self) -> int:
        return len(self.ngrams)


def count_ngrams(
    texts: Sequence[str],
    tokenizer_json: str,
    *,
    max_ngram_len: int = 5,
    capacity: int = 4_000_000,
    batch_size: int = 8192,
    num_threads: int | None = None,
    progress: bool = False,
) -> SpaceSaving:
    """Space-Saving summary of all 1..max_ngram_len-grams of `texts` in bounded memory
    (`capacity` n-grams). Summaries of different shards can be `merge`d."""
    tokenizer = Tokenizer(tokenizer_json)
    summary = SpaceSaving(capacity, max_ngram_len)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc="Counting n-grams", unit="doc")
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        summary.update(tokenizer, batch, num_threads)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return summary


def select_vocabulary(
    summary: SpaceSaving,
    texts: Sequence[str] | None,
    tokenizer_json: str,
    *,
    vocab_size: int,
    min_count: int = 2,
    idf: str = "df",
    num_threads: int | None = None,
) -> NgramVocabulary:
    """Keeps the `vocab_size` most frequent n-grams whose guaranteed count
    (count - error) is at least `min_count`, and computes their IDF.

    Args:
        idf: ``"df"``: ``ln(N / df)`` from exact document frequencies over `texts` (one
            more pass); ``"pseudo"``: the reference's ``ln(total) - ln(count)`` from the
            summary's counts.
    """
    rows, counts, errors = summary.items()
    n = summary.max_ngram_len
    rows = rows.reshape(-1, n)
    guaranteed = counts - errors
    keep = np.flatnonzero(guaranteed >= min_count)[:vocab_size]  # items are count-descending
    ngrams, kept_counts = rows[keep], counts[keep]
    if len(ngrams) == 0:
        raise ValueError(f"no n-gram occurs at least min_count={min_count} times; lower it or add text")
    if idf == "pseudo":
        c = kept_counts.astype(np.float64)
        idf_values = (np.log(c.sum()) - np.log(c)).astype(np.float32)
    elif idf == "df":
        if texts is None:
            raise ValueError('idf="df" needs the texts to count document frequencies')
        placeholder = np.ones(len(ngrams), dtype=np.float32)
        featurizer = Featurizer(tokenizer_json, np.ascontiguousarray(ngrams).ravel(), n, placeholder)
        df = np.zeros(len(ngrams), dtype=np.float64)
        for start in range(0, len(texts), 16384):
            df += featurizer.document_frequencies(list(texts[start : start + 16384]), num_threads)
        idf_values = (np.log(len(texts)) - np.log(np.maximum(df, 1.0))).astype(np.float32)
    else:
        raise ValueError(f'idf must be "df" or "pseudo", got {idf!r}')
    return NgramVocabulary(ngrams=np.ascontiguousarray(ngrams), counts=kept_counts, idf=idf_values)
