"""Thread counts and environment settings: bounded thread pools, rayon's conventions for
thread-count variables, boolean variables parsed as booleans.

Thread counts are checked in fresh interpreters (tests/made_models.py builds the model
there), so other tests' pools do not count."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

import luxical
import luxical.errors
from luxical import _luxical
from luxical._luxical import Tokenizer, resolve_num_threads

# looked up softly so that each test, not the module, fails on a build without them
env_flag = getattr(_luxical, "env_flag", None)
LuxicalWarning = getattr(luxical.errors, "LuxicalWarning", RuntimeWarning)
from made_models import make_embedder, wordpiece_json

TESTS = Path(__file__).resolve().parent
CORES = len(os.sched_getaffinity(0))
#: rust/luxical-core/src/threads.rs: at most this many threads per pool...
MAX_THREADS = max(4 * CORES, 8)
#: ... and this many pools kept alive.
MAX_POOLS = 4


@pytest.fixture(scope="module")
def embedder() -> luxical.Embedder:
    return make_embedder()


def _run_python(code: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    full_env = {k: v for k, v in os.environ.items() if k not in ("LUXICAL_NUM_THREADS", "RAYON_NUM_THREADS")}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# ------------------------------------------------------------------------ thread pools
def test_huge_thread_count_is_capped_with_a_warning(embedder):
    texts = ["hello world, the data text"] * 4
    want = embedder(texts, num_threads=1)
    start = time.perf_counter()
    with pytest.warns(LuxicalWarning, match="num_threads=5000"):
        got = embedder(texts, num_threads=5000)
    assert time.perf_counter() - start < 5
    assert (got == want).all()
    with pytest.warns(LuxicalWarning):
        assert resolve_num_threads(5000) == MAX_THREADS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_num_threads(MAX_THREADS) == MAX_THREADS  # at the cap: no warning


def test_many_distinct_thread_counts_leave_few_threads():
    out = _run_python(
        """
        import os, time, warnings
        from made_models import make_embedder
        e = make_embedder()
        texts = ["hello world, the data text " + str(i) for i in range(64)]
        want = e(texts, num_threads=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for n in range(1, 65):
                assert (e(texts, num_threads=n) == want).all(), n
        deadline = time.time() + 20  # dropped pools' threads exit asynchronously
        while time.time() < deadline and len(os.listdir("/proc/self/task")) > 1 + %d:
            time.sleep(0.1)
        print(len(os.listdir("/proc/self/task")))
        """ % (MAX_POOLS * MAX_THREADS + 4)
    )
    threads = int(out.split()[-1])
    # Before: one pool per size kept forever, 1 + 2 + ... + 64 = 2,080 threads.
    assert threads <= 1 + MAX_POOLS * MAX_THREADS + 4, threads


# ------------------------------------------------------------- thread-count variables
@pytest.mark.parametrize("var", ["RAYON_NUM_THREADS", "LUXICAL_NUM_THREADS"])
@pytest.mark.parametrize("value", ["0", "", " ", "abc", "-2", "2.5", "1e3", "0x4"])
def test_thread_variable_values_rayon_treats_as_default(monkeypatch, embedder, var, value):
    """rayon: RAYON_NUM_THREADS=n (n > 0) is n threads; 0 or anything that is not a
    positive integer means the default (all cores). LUXICAL_NUM_THREADS follows it, its
    default being RAYON_NUM_THREADS, else all cores."""
    monkeypatch.delenv("LUXICAL_NUM_THREADS", raising=False)
    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    monkeypatch.setenv(var, value)
    want = embedder(["a text"], num_threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rayon accepts these silently, so do we
        assert resolve_num_threads(None) == min(CORES, MAX_THREADS)
        assert (embedder(["a text"]) == want).all()
        assert (luxical.embed(["a text"], model=embedder) == want).all()
        embedder.tokenize(["a text"])


def test_luxical_variable_not_set_falls_back_to_rayon_variable(monkeypatch):
    monkeypatch.setenv("RAYON_NUM_THREADS", "3")
    for unset in ("0", "", "abc"):
        monkeypatch.setenv("LUXICAL_NUM_THREADS", unset)
        assert resolve_num_threads(None) == 3
    monkeypatch.setenv("LUXICAL_NUM_THREADS", " 2 ")
    assert resolve_num_threads(None) == 2
    assert resolve_num_threads(1) == 1  # an explicit count wins


def test_thread_variable_above_the_cap_warns(monkeypatch):
    monkeypatch.delenv("LUXICAL_NUM_THREADS", raising=False)
    monkeypatch.setenv("RAYON_NUM_THREADS", "100000")
    with pytest.warns(LuxicalWarning, match="RAYON_NUM_THREADS"):
        assert resolve_num_threads(None) == MAX_THREADS


# ------------------------------------------------------------------ boolean variables
FALSE_VALUES = ["0", "false", "False", "FALSE", "no", "off", "n", "f", "", " 0 "]
TRUE_VALUES = ["1", "true", "True", "yes", "on", "y", "t", " 1 "]


@pytest.mark.parametrize("value", FALSE_VALUES)
def test_false_values_keep_the_fast_tokenizer(monkeypatch, value):
    monkeypatch.setenv("LUXICAL_NO_FAST_TOKENIZER", value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Tokenizer(wordpiece_json()).fast_path
        assert env_flag("LUXICAL_NO_FAST_TOKENIZER") is False


@pytest.mark.parametrize("value", TRUE_VALUES)
def test_true_values_switch_the_fast_tokenizer_off(monkeypatch, value):
    monkeypatch.setenv("LUXICAL_NO_FAST_TOKENIZER", value)
    assert not Tokenizer(wordpiece_json()).fast_path
    assert env_flag("LUXICAL_NO_FAST_TOKENIZER") is True


def test_unset_and_unrecognised_boolean_values(monkeypatch):
    monkeypatch.delenv("LUXICAL_NO_FAST_TOKENIZER", raising=False)
    assert Tokenizer(wordpiece_json()).fast_path
    monkeypatch.setenv("LUXICAL_NO_FAST_TOKENIZER", "maybe")
    with pytest.warns(LuxicalWarning, match="LUXICAL_NO_FAST_TOKENIZER"):
        tok = Tokenizer(wordpiece_json())
    assert tok.fast_path  # the default, as if unset


@pytest.mark.parametrize("value,simd_off", [("0", False), ("false", False), ("1", True), ("yes", True)])
def test_no_simd_is_a_boolean_too(value, simd_off):
    # LUXICAL_NO_SIMD is read once per process: check it in a fresh one.
    out = _run_python(
        "from luxical._luxical import env_flag; print(env_flag('LUXICAL_NO_SIMD'))",
        env={"LUXICAL_NO_SIMD": value},
    )
    assert out.strip() == str(simd_off)


def test_every_boolean_variable_goes_through_the_one_parser():
    """grep-level check of the class: no presence test (`var_os(..).is_some()`) or
    string comparison of an environment variable outside the one parser."""
    import re

    repo = TESTS.parent
    presence = re.compile(r"env::var(_os)?\(.*\)\s*\.(is_some|is_none|is_ok|is_err)\(\)")
    compared = re.compile(r"(os\.environ|os\.getenv|env::var).*(==|!=|\bin\b)\s*[(\[\"']")
    offenders = []
    files = [*(repo / "rust").rglob("*.rs"), *(repo / "python" / "luxical").rglob("*.py")]
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if presence.search(line) or compared.search(line):
                offenders.append(f"{path.relative_to(repo)}: {line.strip()}")
    assert not offenders, "read boolean settings with settings::env_flag / luxical._luxical.env_flag:\n" + "\n".join(offenders)
