"""Shared fixtures: the reference fixtures in ../shared, the reference luxical 1.1.2
installed in its own target folder, and small real-text corpora."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LUXICAL_SHARED_DIR", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "reference"
REFERENCE_TARGET = Path(os.environ.get("LUXICAL_REFERENCE_PATH", REPO / ".reference"))
SCRATCH = Path(os.environ.get("TMPDIR", "/tmp"))


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (the shared/ folder is absent, e.g. an sdist built elsewhere)")
    return path


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    return _require(FIXTURES, "reference fixtures")


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
        pytest.skip(
            f"reference luxical 1.1.2 not installed at {REFERENCE_TARGET}; "
            "install it with: pip install --no-deps --target .reference luxical==1.1.2 arrow-tokenize==1.0.2 uniplot"
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


@pytest.fixture(scope="session")
def many_real_texts() -> list[str]:
    """12,000 real documents (Debian package descriptions and queries, dictionary
    definitions) for the data-engine tests; embedding only, never training."""
    texts: list[str] = []
    for name in ("debian_short2long/corpus.jsonl", "gcide_word2def/corpus.jsonl"):
        path = _require(SHARED / "eval" / name, "the shared eval data")
        with open(path, encoding="utf-8") as f:
            texts.extend(json.loads(line)["text"] for line in f)
    return texts[:12_000]
