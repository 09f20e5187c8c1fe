"""The installed package: what `pip install luxical` brings, import cost, version."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import luxical

REPO = Path(__file__).resolve().parents[1]
EXPECT_INSTALLED = os.environ.get("LUXICAL_EXPECT_INSTALLED") == "1"


@pytest.mark.skipif(not EXPECT_INSTALLED, reason="only when scripts/test.sh runs the suite against the installed wheel")
def test_suite_runs_against_the_installed_wheel_without_rust():
    path = Path(luxical.__file__).resolve()
    assert "site-packages" in path.parts, f"luxical imported from {path}, not from the installed wheel"
    assert REPO / "python" not in path.parents
    assert shutil.which("cargo") is None and shutil.which("rustc") is None


def test_version_is_defined_once():
    cargo = (REPO / "Cargo.toml").read_text() if (REPO / "Cargo.toml").is_file() else None
    assert luxical.__version__ == metadata.version("luxical")
    if cargo is not None:
        assert re.search(rf'^version = "{re.escape(luxical.__version__)}"', cargo, re.M)
    cli = subprocess.run([sys.executable, "-m", "luxical", "--version"], capture_output=True, text=True, check=True)
    assert cli.stdout.strip() == f"luxical {luxical.__version__}"


def test_saved_model_records_the_writer_version(fixture_embedder, tmp_path):
    import numpy as np

    fixture_embedder.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as z:
        assert bytes(z["luxical_writer_version"]).decode() == f"luxical {luxical.__version__}"


def test_core_install_needs_only_numpy():
    requires = metadata.requires("luxical") or []
    core = [r for r in requires if "extra ==" not in r]
    assert [re.split(r"[<>=!~ ;\[]", r)[0].lower() for r in core] == ["numpy"]
    extras = set(metadata.metadata("luxical").get_all("Provides-Extra") or [])
    assert {"train", "spark", "dask", "ray", "polars", "hub", "dev"} <= extras


def test_import_is_light():
    """`import luxical` loads no model, no torch/scipy/pyarrow and starts no thread pool."""
    code = (
        "import sys, time, threading; t = time.perf_counter(); import luxical; dt = time.perf_counter() - t; "
        "heavy = [m for m in ('torch', 'scipy', 'pyarrow', 'pandas', 'sentence_transformers', 'tqdm') if m in sys.modules]; "
        "print(dt, heavy, threading.active_count(), luxical._cache)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(maxsplit=1)
    assert out[1].strip() == "[] 1 {}"
    # Import time is a benchmark matter; this only catches something grossly heavy.
    assert float(out[0]) < 2.0


def test_stubs_and_marker_ship_with_the_package():
    pkg = Path(luxical.__file__).parent
    assert (pkg / "py.typed").is_file() and (pkg / "_luxical.pyi").is_file()
    assert (pkg / "models" / "default.npz").is_file()
    # The training recipe's English word list and its license travel with the package.
    assert (pkg / "training" / "words" / "english.txt.xz").is_file()
    assert "Kevin Atkinson" in (pkg / "training" / "words" / "COPYRIGHT-SCOWL").read_text()


def _tracked_text_files() -> list[Path]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.fail("the self-containment check reads the git checkout; run the suite from a clone", pytrace=False)
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    return [REPO / n.decode() for n in names if n and not n.endswith((b".npz", b".npy", b".xz", b".lock"))]


def test_nothing_tracked_reads_files_outside_the_repository():
    """A clean clone is the whole project: no tracked file points at a sibling folder of
    the checkout (the strings are built here so that this file does not match itself)."""
    outside = ["..", "shared"]
    needles = ["/".join(outside), "LUXICAL_" + "SHARED_DIR", 'parent / "' + outside[1] + '"']
    hits = []
    for path in _tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        hits += [f"{path.relative_to(REPO)}: {n}" for n in needles if n in text]
    assert not hits, hits
