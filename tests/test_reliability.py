"""Faults a web-scale job meets: huge documents, Ctrl-C inside one native batch, millions
of empty strings, every kind of Unicode. See tests/README.md for the whole list."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import unicodedata

import numpy as np
import pytest

import luxical
from luxical._luxical import DEFAULT_MAX_TOKENS
from conftest import unit_or_zero_rows

if os.name != "posix":  # pragma: no cover
    pytest.skip("platform: signals and ru_maxrss are POSIX", allow_module_level=True)

UNIT = "alpha beta gamma delta "  # four words, each one BERT-uncased token


def _run_child(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)


def test_unit_is_four_tokens():
    ids = luxical.load().tokenize([UNIT])[0]
    assert len(ids) == 4


def test_max_tokens_keeps_the_first_tokens(fixture_embedder, real_texts):
    long_doc = max(real_texts, key=len)
    ids = fixture_embedder.tokenize([long_doc], max_tokens=None)[0]
    assert len(ids) > 300
    np.testing.assert_array_equal(fixture_embedder.tokenize([long_doc], max_tokens=100)[0], ids[:100])
    # the embedding of a truncated document is the embedding of its first 100 tokens'
    # text, here cut at a word boundary so both tokenize alike
    words = long_doc.split(" ")
    k = max(k for k in range(len(words)) if len(fixture_embedder.tokenize([" ".join(words[:k])])[0]) <= 100)
    prefix = " ".join(words[:k])
    n = len(fixture_embedder.tokenize([prefix])[0])
    np.testing.assert_array_equal(fixture_embedder([long_doc], max_tokens=n), fixture_embedder([prefix]))
    with pytest.raises(ValueError, match="max_tokens"):
        fixture_embedder(["x"], max_tokens=0)


def test_a_100_mb_document_embeds_in_bounded_memory():
    """Tokenized window by window and only up to max_tokens: peak memory grows by tens of
    MB, not the gigabytes a whole-document encoding takes; the result is the embedding of
    the first 2**20 tokens."""
    proc = _run_child(
        f"""
        import resource, time, numpy as np, luxical
        unit = {UNIT!r}
        model = luxical.load()
        model(["warm up"])
        doc = unit * (100_000_000 // len(unit))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        got = model([doc])
        seconds = time.perf_counter() - t0
        grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        prefix = unit * ({DEFAULT_MAX_TOKENS} // 4)
        ids = model.tokenize([doc])[0]
        unit_ids = model.tokenize([unit])[0]
        assert len(ids) == {DEFAULT_MAX_TOKENS}, len(ids)
        assert (ids == np.tile(unit_ids, {DEFAULT_MAX_TOKENS} // 4)).all()
        assert np.array_equal(got, model([prefix])), "not the embedding of the first tokens"
        assert np.isfinite(got).all() and abs(np.linalg.norm(got) - 1) < 1e-5
        print(f"grew {{grew_mb:.0f}} MB in {{seconds:.2f}} s")
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    grew = float(proc.stdout.split()[1])
    assert grew < 300, proc.stdout


@pytest.mark.parametrize("container", ["list", "arrow"])
def test_ctrl_c_inside_one_long_native_batch_returns_promptly(container):
    """One call, one batch of ~150 MB of text (~12 s of work): SIGINT half a second in must
    raise KeyboardInterrupt within a couple of seconds, and the process stays usable.

    The child tokenizes with the `tokenizers` crate (LUXICAL_NO_FAST_TOKENIZER=1): the fast
    path reads this repetitive text at ~300 MB/s, so the whole batch would end before the
    signal arrives (seen on an AVX-512 machine) and the test would time nothing."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time, luxical
            texts = [{UNIT!r} * 250 + str(i) for i in range(25_000)]
            if {container!r} == "arrow":
                import pyarrow as pa
                texts = pa.array(texts, pa.large_string())
            model = luxical.load()
            model(["warm up"])
            print("go", flush=True)
            t0 = time.perf_counter()
            try:
                model(texts, batch_size=10**9)
                print("finished", time.perf_counter() - t0, flush=True)
            except KeyboardInterrupt:
                print("interrupted", time.perf_counter() - t0, flush=True)
            assert model(["still works"]).shape[0] == 1
            print("usable", flush=True)
        """)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "LUXICAL_NO_FAST_TOKENIZER": "1"},
    )
    try:
        assert proc.stdout.readline().strip() == "go"
        time.sleep(0.5)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        after_signal = time.perf_counter() - sent
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    lines = out.split("\n")
    assert lines[0].startswith("interrupted"), out
    assert "usable" in out
    assert after_signal < 5, f"took {after_signal:.1f} s to return after Ctrl-C"


def test_a_million_empty_strings(fixture_embedder):
    out = fixture_embedder([""] * 1_000_000)
    assert out.shape == (1_000_000, fixture_embedder.dim)
    assert not out.any()


def test_every_unicode_category_and_control_characters(fixture_embedder):
    # One string per general category, from every assigned code point of it (sampled),
    # plus NUL/controls, RTL, combining marks, emoji ZWJ sequences, punctuation only.
    by_category: dict[str, list[str]] = {}
    for cp in range(0x110000):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat == "Cs":  # lone surrogates are refused (tested in test_embedder)
            continue
        bucket = by_category.setdefault(cat, [])
        if len(bucket) < 400:
            bucket.append(ch)
    texts = ["".join(chars) for chars in by_category.values()]
    texts += [
        "\x00\x01\x02 text \x7f\x1b[31m", "שלום עולם مرحبا بالعالم", "e\u0301\u0302\u0303 cafe\u0301",
        "👩\u200d👩\u200d👧\u200d👦 👍🏽 🏳️\u200d🌈", "!!!???...;;;", "中文文本，日本語のテキスト、한국어 텍스트",
        "\ufeff\u200b\u2028\u2029", "a" * 5000, "\U0010fffd\U000e0001",
    ]
    out = fixture_embedder(texts)
    assert out.shape == (len(texts), fixture_embedder.dim)
    assert not np.isnan(out).any() and unit_or_zero_rows(out)
    # each text embeds as if alone, in any batch
    for i in range(0, len(texts), 7):
        np.testing.assert_array_equal(fixture_embedder([texts[i]])[0], out[i])


def test_keyboard_interrupt_in_training_tokenizer_is_not_swallowed():
    """The training bindings share the interruptible path: a long tokenize call also
    honours Ctrl-C (raised from a signal handler we trigger ourselves)."""
    from luxical._luxical import Tokenizer

    tok = Tokenizer(luxical.load().tokenizer_json)
    # 60,000 references to one 6 KB string: ~360 MB of text, about a second even for the fast
    # path at ~300 MB/s, so the alarm 0.1 s in always lands inside the native call.
    texts = [UNIT * 250] * 60_000
    old = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            tok.tokenize(texts)
        assert time.perf_counter() - t0 < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)



def test_training_corpus_with_nulls_and_empty_rows(tmp_path):
    """Documented policy: null and empty documents are skipped; a wrong type is an error
    naming the file and line."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from luxical.training.data import read_texts

    pq.write_table(pa.table({"text": ["first", None, "", "second"]}), tmp_path / "a.parquet")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in [{"text": "third"}, {"text": None}, {"text": ""}]) + "\n\n")
    (tmp_path / "c.txt").write_text("fourth\n\n   \nfifth\n")
    assert read_texts([tmp_path / "a.parquet", tmp_path / "b.jsonl", tmp_path / "c.txt"]) == [
        "first", "second", "third", "fourth", "fifth",
    ]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": 5}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'text' is int"):
        read_texts([tmp_path / "bad.jsonl"])
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"column 'text' is int64, expected string"):
        read_texts([tmp_path / "bad.parquet"])
