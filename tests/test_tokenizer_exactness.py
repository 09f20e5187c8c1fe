"""Token ids equal the `tokenizers` package's (the oracle) for every tokenizer
configuration, not only the default one:

- the fast WordPiece path serves only configurations it reproduces exactly: each field of
  the normalizer, pre-tokenizer, model and added tokens is flipped in turn, and every
  variant must give the oracle's ids, fast path or not;
- long texts, tokenized window by window, give the ids of the whole text even when a run
  of spaces, newlines or punctuation (which byte-level BPE merges, e.g. `ĠĠ`) or an added
  token straddles a window boundary.

The tokenizers are trained in the test (tests/made_models.py)."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest

from made_models import WORDS, byte_level_bpe_json, wordpiece_json

tokenizers = pytest.importorskip("tokenizers", reason="the oracle is the tokenizers package (a test dependency)")

from luxical._luxical import Tokenizer  # noqa: E402

#: Bytes per window of long-text tokenization (rust/luxical-core/src/tokenize.rs).
WINDOW_BYTES = 1 << 18

TEXTS = [
    "", " ", "unaffable embeddings", "Unaffable EMBEDDINGS, naive resume!", "the quick brown fox",
    "hello world", "HELLO World hello", "he\x00llo wor\x0bld hel\x7flo", "x[SEP]y [CLS] [sep] [MASK]x",
    "don't stop-believing... (42) 3.14 #tag @user a##b ##ing", "tab\tsep\r\nline\n\nend",
    "a" * 5 + " " + "b" * 99 + " " + "c" * 101 + " " + "runningrunningrunning",
    "xyzzy qwrtp unaffablyembeddingsdata", "@@able x@@y ·able", "new york new  york newyork New York",
    "Café naïve résumé ÉCOLE 中文text emoji😀inside", "combining e\u0301 nbsp\u00a0space ideographic\u3000space",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "datatexttoken index vectors searchengine fasterfast catscats",
]


def _oracle_ids(tokenizer_json: str, texts: list[str]) -> list[list[int]]:
    hf = tokenizers.Tokenizer.from_str(tokenizer_json)
    hf.no_truncation()
    hf.no_padding()
    return [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]


def _our_ids(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    ids, offsets = tok.tokenize(texts, None, None)
    return [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(len(texts))]


def _assert_matches_oracle(tokenizer_json: str, texts: list[str], what: str) -> Tokenizer:
    tok = Tokenizer(tokenizer_json)
    ours, theirs = _our_ids(tok, texts), _oracle_ids(tokenizer_json, texts)
    bad = [i for i in range(len(texts)) if ours[i] != theirs[i]]
    assert not bad, (
        f"{what}: {len(bad)} of {len(texts)} texts differ (fast path: {getattr(tok, 'fast_path', '?')}), e.g. "
        f"{texts[bad[0]][:80]!r}: ours {ours[bad[0]][:12]} vs tokenizers {theirs[bad[0]][:12]}"
    )
    return tok


# --------------------------------------------------------------- configuration variants
def _set(path: str, value):
    """A variant that sets one field (dotted path) of the tokenizer.json."""

    def edit(cfg: dict) -> None:
        *parents, last = path.split(".")
        node = cfg
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


def _added(content: str, **flags):
    def edit(cfg: dict) -> None:
        vocab = cfg["model"]["vocab"]
        token_id = vocab.get(content, len(vocab) + len(cfg["added_tokens"]))
        cfg["added_tokens"].append(
            {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": True, "special": False, **flags}
        )

    return edit


BERT_NORMALIZER = {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True, "strip_accents": None, "lowercase": True}

WORDPIECE_VARIANTS = {
    "base": [],
    "prefix empty": [_set("model.continuing_subword_prefix", "")],
    "prefix @@": [_set("model.continuing_subword_prefix", "@@")],
    "prefix #": [_set("model.continuing_subword_prefix", "#")],
    "prefix letter": [_set("model.continuing_subword_prefix", "x")],
    "prefix non-ASCII": [_set("model.continuing_subword_prefix", "·")],
    "max chars 0": [_set("model.max_input_chars_per_word", 0)],
    "max chars 1": [_set("model.max_input_chars_per_word", 1)],
    "max chars 5": [_set("model.max_input_chars_per_word", 5)],
    "max chars huge": [_set("model.max_input_chars_per_word", 10**9)],
    "unk is another token": [_set("model.unk_token", "[PAD]")],
    "no lowercase": [_set("normalizer.lowercase", False)],
    "no clean_text": [_set("normalizer.clean_text", False)],
    "no chinese chars": [_set("normalizer.handle_chinese_chars", False)],
    "strip accents": [_set("normalizer.strip_accents", True)],
    "keep accents": [_set("normalizer.strip_accents", False)],
    "no lowercase, strip accents": [_set("normalizer.lowercase", False), _set("normalizer.strip_accents", True)],
    "normalizer null": [_set("normalizer", None)],
    "normalizer Lowercase": [_set("normalizer", {"type": "Lowercase"})],
    "normalizer Sequence[Bert]": [_set("normalizer", {"type": "Sequence", "normalizers": [BERT_NORMALIZER]})],
    "normalizer NFD+Lowercase+StripAccents": [
        _set("normalizer", {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"}, {"type": "StripAccents"}]})
    ],
    "pre_tokenizer Whitespace": [_set("pre_tokenizer", {"type": "Whitespace"})],
    "pre_tokenizer WhitespaceSplit": [_set("pre_tokenizer", {"type": "WhitespaceSplit"})],
    "pre_tokenizer Sequence[Bert]": [_set("pre_tokenizer", {"type": "Sequence", "pretokenizers": [{"type": "BertPreTokenizer"}]})],
    "pre_tokenizer Bert+Digits": [
        _set("pre_tokenizer", {"type": "Sequence", "pretokenizers": [{"type": "BertPreTokenizer"}, {"type": "Digits", "individual_digits": True}]})
    ],
    "pre_tokenizer null": [_set("pre_tokenizer", None)],
    "pre_tokenizer Punctuation": [_set("pre_tokenizer", {"type": "Punctuation", "behavior": "Isolated"})],
    "post_processor BERT template": [
        _set("post_processor", {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]})
    ],
    "decoder WordPiece": [_set("decoder", {"type": "WordPiece", "prefix": "##", "cleanup": True})],
    "added word, normalized": [_added("hello")],
    "added word, not normalized": [_added("hello", normalized=False)],
    "added word, special": [_added("hello", special=True, normalized=False)],
    "added mixed case, normalized": [_added("HeLLo")],
    "added word, single_word": [_added("world", single_word=True)],
    "added word, lstrip rstrip": [_added("world", lstrip=True, rstrip=True, normalized=False)],
    "added new token": [_added("qwrtp")],
    "added token with punctuation": [_added("a##b", normalized=False)],
    "added continuation": [_added("##ing")],
    "added token with space": [_added("new york")],
    "added non-ASCII": [_added("café", normalized=False)],
    "added [mask] normalized": [_added("[mask]")],
}


@pytest.fixture(scope="module")
def wordpiece() -> str:
    return wordpiece_json()


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rng = random.Random(1)
    extra = []
    for _ in range(200):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 12))]
        words = [w.upper() if rng.random() < 0.1 else w for w in words]
        glue = [rng.choice([" ", "", "-", ". ", "\t", "!", "'", "\x00", " ##"]) for _ in words]
        extra.append("".join(g + w for g, w in zip(glue, words)))
    return TEXTS + extra


def test_base_wordpiece_takes_the_fast_path(wordpiece, texts):
    tok = _assert_matches_oracle(wordpiece, texts, "base")
    assert tok.fast_path, "the test tokenizer must exercise the fast path"


@pytest.mark.parametrize("name", list(WORDPIECE_VARIANTS))
def test_every_wordpiece_variant_matches_the_tokenizers_package(wordpiece, texts, name):
    cfg = json.loads(wordpiece)
    for edit in WORDPIECE_VARIANTS[name]:
        edit(cfg)
    variant = json.dumps(cfg)
    try:
        tokenizers.Tokenizer.from_str(variant)
    except Exception as exc:  # a variant the oracle itself refuses is not a test
        pytest.fail(f"variant {name!r} does not load in the tokenizers package: {exc}")
    _assert_matches_oracle(variant, texts, name)


def test_unaffable_embeddings_with_an_empty_prefix(wordpiece):
    cfg = json.loads(wordpiece)
    cfg["model"]["continuing_subword_prefix"] = ""
    texts = ["unaffable embeddings", "unaffably embeddingz", "unaffableembeddings"]
    oracle = _oracle_ids(json.dumps(cfg), texts)
    unk = cfg["model"]["vocab"]["[UNK]"]
    assert all(ids and unk not in ids for ids in oracle)  # real pieces, no unknown token
    assert len(oracle[1]) > 2  # words the vocabulary splits into pieces
    assert _our_ids(Tokenizer(json.dumps(cfg)), texts) == oracle


# ----------------------------------------------------------------------- window seams
RUNS = [" " * 8, " " * 3, "\n" * 6, "\n\n", " \n \n ", "\t\t\t\t", "\r\n\r\n", "  \t\n  ",
        "!!!!!!", " ... ", "?!?!", " - - - ", "....  ....", ".\n\n"]


def _filler(n_bytes: int, seed: int) -> str:
    rng = random.Random(seed)
    out, size = [], 0
    while size < n_bytes:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n_bytes]


def _seam_texts() -> list[str]:
    """Texts of ~2.3 windows whose first window boundary falls inside (or right around) a
    run, and with more runs scattered through the rest (later cuts land near them)."""
    texts = []
    for k, run in enumerate(RUNS):
        for shift in (-len(run) // 2 - 1, -1, 0):
            head = _filler(WINDOW_BYTES + shift, seed=k)
            rng = random.Random(k * 31 + shift)
            tail_words = _filler(int(WINDOW_BYTES * 1.05), seed=k + 100).split(" ")
            tail = "".join(w + (rng.choice(RUNS) if rng.random() < 0.2 else " ") for w in tail_words)
            texts.append(head + run + "word" + tail)
    return texts


@pytest.fixture(scope="module")
def seam_texts() -> list[str]:
    return _seam_texts()


def _assert_windows_equal_whole(tokenizer_json: str, texts: list[str], what: str) -> None:
    assert all(len(t.encode()) > 2 * WINDOW_BYTES for t in texts)
    tok = Tokenizer(tokenizer_json)
    ours, theirs = _our_ids(tok, texts), _oracle_ids(tokenizer_json, texts)
    bad = [i for i in range(len(texts)) if ours[i] != theirs[i]]
    if bad:
        a, b = np.asarray(ours[bad[0]]), np.asarray(theirs[bad[0]])
        first = int(np.argmax(a[: min(len(a), len(b))] != b[: min(len(a), len(b))]))
        pytest.fail(
            f"{what}: {len(bad)} of {len(texts)} long texts differ from whole-text tokenization; "
            f"text {bad[0]}: {len(a)} vs {len(b)} ids, first difference at id {first}"
        )


def test_byte_level_bpe_windows_equal_whole_text(seam_texts):
    bpe = byte_level_bpe_json()
    merges = json.loads(bpe)["model"]["merges"]
    assert ["Ġ", "Ġ"] in merges or "Ġ Ġ" in merges  # the merge that spans a cut in a run of spaces
    _assert_windows_equal_whole(bpe, seam_texts, "byte-level BPE")


def test_byte_level_bpe_with_prefix_space_windows_equal_whole_text(seam_texts):
    _assert_windows_equal_whole(byte_level_bpe_json(add_prefix_space=True), seam_texts[::3], "byte-level BPE, add_prefix_space")


def test_wordpiece_windows_equal_whole_text(seam_texts, wordpiece):
    _assert_windows_equal_whole(wordpiece, seam_texts, "WordPiece")


def test_added_token_with_a_space_across_a_window_boundary(wordpiece):
    cfg = json.loads(wordpiece)
    _added("new york")(cfg)
    variant = json.dumps(cfg)
    texts = []
    for shift in range(-9, 2):
        texts.append(_filler(WINDOW_BYTES + shift - 4, seed=shift) + " new york " + _filler(WINDOW_BYTES + 5000, seed=7))
    _assert_windows_equal_whole(variant, texts, "WordPiece with the added token 'new york'")
