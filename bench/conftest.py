from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from corpora import FIXTURE_MODEL, load_corpora  # noqa: E402


@pytest.fixture(scope="session")
def corpora():
    texts, source = load_corpora()
    print(f"\nbench corpora: {source}; short={len(texts['short'])} long={len(texts['long'])}")
    return texts


@pytest.fixture(scope="session")
def fixture_embedder():
    import luxical

    if not FIXTURE_MODEL.is_file():
        pytest.skip(f"fixture model not found at {FIXTURE_MODEL}")
    return luxical.Embedder.load(FIXTURE_MODEL)
