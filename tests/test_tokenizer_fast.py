"""The fast WordPiece path (ASCII runs, word cache) against the Hugging Face `tokenizers`
package on the same tokenizer.json: identical ids on every real text we have and on
inputs built to hit its edges."""

from __future__ import annotations


import numpy as np
import pytest

import luxical
from conftest import read_real_texts

tokenizers = pytest.importorskip("tokenizers", reason="the oracle is the tokenizers package (a test dependency)")

TRICKY = [
    "", " ", "Hello, World!", "don't stop-believing...", "a\x0bb c\x00d e\x7ff g\x1bh",  # dropped controls join words
    "tab\tsep\r\nline", "[SEP] [CLS]x [MASK] [sep] [Sep]", "x[SEP]y", "[UNK]",
    "Café naïve résumé", "ÉCOLE", "中文text mixed 日本語", "emoji😀inside words👍🏽",
    "nbsp\u00a0space", "ideographic\u3000space", "line\u2028sep", "nel\u0085char", "zero\u200bwidth",
    "a" * 99, "b" * 100, "c" * 101, "x" * 5000 + " y", "supercalifragilisticexpialidocious",
    "1,234.56 $78 #tag @user http://example.com/path?q=1&r=2", "UPPER lower MiXeD",
    "combining e\u0301 a \u0301b", "\ufffd replacement", "((nested)) [[brackets]] {{braces}}",
    "\u00e9" * 120, "ab\u0300" * 40,
]


@pytest.fixture(scope="module")
def oracle():
    model = luxical.load()
    hf = tokenizers.Tokenizer.from_str(model.tokenizer_json)
    hf.no_truncation()
    hf.no_padding()
    return model, hf


def _sample_texts() -> list[str]:
    """Every text of the repository's real-text sample, and the titles and bodies of its
    package descriptions on their own (short texts hit other paths than long ones)."""
    texts = []
    for row in read_real_texts():
        texts.extend(row[k] for k in ("text", "title", "body") if isinstance(row.get(k), str) and len(row[k]) > 1)
    return texts


def _assert_same(model, hf, texts):
    ours = model.tokenize(texts, max_tokens=None)
    theirs = hf.encode_batch(texts, add_special_tokens=False)
    bad = [i for i, (o, t) in enumerate(zip(ours, theirs)) if not np.array_equal(o, np.asarray(t.ids, dtype=np.uint32))]
    assert not bad, f"{len(bad)} texts differ, e.g. {texts[bad[0]]!r}"


def test_default_tokenizer_takes_the_fast_path(oracle):
    model, _ = oracle
    assert "BertNormalizer" in model.tokenizer_json and '"WordPiece"' in model.tokenizer_json


def test_edge_cases_match_the_tokenizers_package(oracle):
    _assert_same(*oracle, TRICKY)
    # the same words again, served from the word cache, and in one long document
    _assert_same(*oracle, TRICKY)
    _assert_same(*oracle, [" \n ".join(TRICKY)])


def test_every_sample_text_matches_the_tokenizers_package(oracle):
    texts = _sample_texts()
    assert len(texts) > 30_000
    _assert_same(*oracle, texts)


def test_real_documents_match(oracle, real_texts, fixture_embedder):
    _assert_same(*oracle, real_texts)
    # the fixture model's tokenizer.json (a separate copy, from the reference package)
    hf = tokenizers.Tokenizer.from_str(fixture_embedder.tokenizer_json)
    hf.no_truncation()
    hf.no_padding()
    _assert_same(fixture_embedder, hf, real_texts + TRICKY)
