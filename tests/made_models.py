"""Tokenizers and models built inside the tests (no fixture file): the `tokenizers` package
trains them on a few generated lines, so every test that uses them runs on a clean clone."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

PAD = 2**32 - 1

WORDS = (
    "the of and to in is for on with data text embed embedding embeddings model token tokens "
    "unaffable affable able running runner quickly jumped over lazy dog fox brown hello world "
    "code function return value values index vector vectors search engine engines fast faster "
    "cat cats naive resume cafe school state states united new york city cities number numbers"
).split()


def sample_lines(n: int = 400, seed: int = 0) -> list[str]:
    """Generated English-like lines with punctuation, digits, indentation, blank lines and
    runs of spaces / newlines / punctuation (so byte-level BPE learns merges such as `ĠĠ`)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
        if i % 3 == 0:
            words[0] = words[0].capitalize()
        line = " ".join(words)
        if i % 5 == 0:
            line = "    " + line + ":"
        if i % 7 == 0:
            line += "!!! ... ---"
        if i % 11 == 0:
            line = line.replace(" ", "  ")
        lines.append(line + rng.choice([".", ",", "?", "", " (42)", " 3.14"]))
        if i % 4 == 0:
            lines.append("")
    return lines


def wordpiece_json(vocab_size: int = 400) -> str:
    """A BERT-uncased-style tokenizer (BertNormalizer, BertPreTokenizer, WordPiece with
    `##` continuations) trained on `sample_lines()`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyz0123456789"),
    )
    tok.train_from_iterator(sample_lines(), trainer)
    return tok.to_str()


def byte_level_bpe_json(vocab_size: int = 500, add_prefix_space: bool = False) -> str:
    """A GPT-2-style byte-level BPE tokenizer trained on `sample_lines()` (it learns merges
    of runs of spaces, newlines and punctuation)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    lines = sample_lines()
    # whole documents too, so that newline runs and indentation are seen in context
    docs = [("\n" * (1 + i % 4)).join(lines[i : i + 12]) + "\r\n\r\n\t\t" for i in range(0, len(lines), 12)]
    tok.train_from_iterator(lines + docs, trainer)
    return tok.to_str()


def make_embedder(tokenizer_json: str | None = None, *, dim: int = 16, hidden: int = 32, seed: int = 0):
    """A small random model over unigrams and bigrams of the tokenizer's vocabulary. Its
    weights are random, so int8 and float32 arithmetic give different outputs."""
    import luxical

    tokenizer_json = tokenizer_json or wordpiece_json()
    vocab = json.loads(tokenizer_json)["model"]["vocab"]
    ids = sorted(set(vocab.values()))
    rng = np.random.default_rng(seed)
    rows = [[i, PAD] for i in ids]
    rows += [[int(a), int(b)] for a, b in rng.choice(ids, size=(4 * len(ids), 2))]
    ngrams = np.unique(np.array(rows, dtype=np.uint32), axis=0)
    idf = rng.uniform(0.5, 3.0, len(ngrams)).astype(np.float32)
    layers = [
        rng.standard_normal((hidden, len(ngrams))).astype(np.float32),
        rng.standard_normal((hidden, hidden)).astype(np.float32),  # int8 applies to hidden layers
        rng.standard_normal((dim, hidden)).astype(np.float32),
    ]
    return luxical.Embedder.from_arrays(tokenizer_json=tokenizer_json, ngrams=ngrams, idf=idf, layers=layers)


def save_model(directory: Path, name: str = "made.npz", **kwargs) -> Path:
    path = Path(directory) / name
    make_embedder(**kwargs).save(path)
    return path
